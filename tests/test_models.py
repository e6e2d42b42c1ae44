"""Parametric models: registry, the layer equations of docs/internals.md, bakeability, causality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from knobcap.models.architectures import ArchitectureError, check_config, default_config, weight_shapes
from knobcap.models.base import (
    ModelConfigError,
    ParametricModel,
    available_models,
    create_model,
    register_model,
)
from playkit import tiny_wavenet_config


def tiny_wavenet(n_controls: int = 2, activation: str = "tanh") -> dict:
    """The shared tiny WaveNet varied for the equation checks: louder (head_scale 0.7), 3 channels in the
    first array and kernel 2 with dilations 1, 3 in the second (receptive field 1 + 2*7 + 1*4 = 19)."""
    config = tiny_wavenet_config(n_controls, head_scale=0.7, activation=activation)
    config["arrays"][0]["channels"] = 3
    config["arrays"][1].update(kernel_size=2, dilations=[1, 3])
    return config


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def reference_wavenet(state: dict, config: dict, x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The equations of docs/internals.md written out with numpy loops (one item, constant c)."""
    act = {"tanh": np.tanh, "hardtanh": lambda z: np.clip(z, -1, 1),
           "leaky_relu": lambda z: np.where(z >= 0, z, 0.01 * z)}[config["activation"]]
    w = {k: v.numpy().astype(np.float64) for k, v in state.items()}
    cond = np.concatenate([x[None, :], np.repeat(c[:, None], len(x), axis=1)])  # (1 + C, T)
    if config.get("mixin") == "product":
        cond = np.concatenate([cond, x[None, :] * cond[1:]])  # (1 + 2C, T): [x; c; x * c]
    h = x[None, :].astype(np.float64)
    head = None
    for i, array in enumerate(config["arrays"]):
        h = w[f"arrays.{i}.rechannel.weight"][:, :, 0] @ h
        k = array["kernel_size"]
        for j, d in enumerate(array["dilations"]):
            p = f"arrays.{i}.layers.{j}"
            length = h.shape[1] - (k - 1) * d
            z = np.zeros((h.shape[0], length)) + w[f"{p}.conv.bias"][:, None]
            for tap in range(k):
                z += w[f"{p}.conv.weight"][:, :, tap] @ h[:, tap * d:tap * d + length]
            if config.get("film"):  # g = 1 + G c scales the dilated convolution (bias included)
                z *= 1.0 + (w[f"{p}.film.weight"][:, :, 0] @ c)[:, None]
            z += (w[f"{p}.mixin.weight"][:, :, 0] @ cond)[:, -length:]
            a = act(z)
            h = h[:, -length:] + w[f"{p}.out.weight"][:, :, 0] @ a + w[f"{p}.out.bias"][:, None]
            head = a if head is None else head[:, -length:] + a
        rechannel = f"arrays.{i}.head_rechannel"
        head = w[f"{rechannel}.weight"][:, :, 0] @ head + w[f"{rechannel}.bias"][:, None]
    return config["head_scale"] * head[0]


def test_registry_lists_built_ins_and_refuses_unknown_names() -> None:
    assert {"wavenet", "lstm"} <= set(available_models())
    with pytest.raises(ModelConfigError, match="unknown architecture 'nope'"):
        create_model("nope", {"n_controls": 1})
    with pytest.raises(ModelConfigError, match="n_controls"):
        create_model("lstm", {"hidden_size": 4, "num_layers": 1})


def test_a_user_architecture_plugs_in_by_name() -> None:
    class Gain(ParametricModel):
        architecture = "test-gain"

        def __init__(self, config):
            super().__init__(config)
            self.gain = torch.nn.Linear(self.n_controls, 1)

        @property
        def receptive_field(self) -> int:
            return 1

        def forward(self, x, c):
            return x * self.gain(c)

    register_model("test-gain", Gain)
    model = create_model("test-gain", {"n_controls": 2})
    assert model.architecture == "test-gain" and "test-gain" in available_models()
    assert model(torch.ones(3, 5), torch.zeros(3, 2)).shape == (3, 5)
    with pytest.raises(ModelConfigError, match="already registered"):
        register_model("test-gain", lambda config: model)


@pytest.mark.parametrize("architecture", ["wavenet", "lstm"])
def test_state_dict_names_and_shapes_are_the_file_format(architecture: str) -> None:
    config = tiny_wavenet(3) if architecture == "wavenet" else {"n_controls": 3, "hidden_size": 5,
                                                                 "num_layers": 2}
    model = create_model(architecture, config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == weight_shapes(architecture, model.config)
    default = create_model(architecture, default_config(architecture, 4))
    assert {k: tuple(v.shape) for k, v in default.state_dict().items()} == weight_shapes(
        architecture, default.config)


@pytest.mark.parametrize(("activation", "mixin"), [("tanh", "linear"), ("hardtanh", "linear"),
                                                  ("leaky_relu", "linear"), ("tanh", "product")])
def test_wavenet_follows_the_documented_equations(activation: str, mixin: str) -> None:
    config = {**tiny_wavenet(2, activation), "mixin": mixin}
    model = create_model("wavenet", config)
    randomise(model)
    assert model.receptive_field == 1 + 2 * (1 + 2 + 4) + 1 * (1 + 3)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(60).astype(np.float32)
    c = np.array([0.3, -1.0], np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(x)[None], torch.from_numpy(c)[None])[0].numpy()
    assert out.shape == (60 - model.receptive_field + 1,)
    np.testing.assert_allclose(out, reference_wavenet(model.state_dict(), config, x, c), rtol=1e-5, atol=1e-5)


def test_a_constant_setting_folds_into_the_conv_biases() -> None:
    """Bakeable: W_c c added to each conv bias, control columns zeroed, gives the same output."""
    model = create_model("wavenet", tiny_wavenet(2))
    randomise(model, 3)
    c = torch.tensor([[0.8, 1.0]])
    x = torch.randn(1, 80)
    baked = create_model("wavenet", tiny_wavenet(2))
    baked.load_state_dict(model.state_dict())
    with torch.no_grad():
        for array in baked.arrays:
            for layer in array.layers:
                layer.conv.bias += layer.mixin.weight[:, 1:, 0] @ c[0]
                layer.mixin.weight[:, 1:, :] = 0.0
        expected = model(x, c)
        got = baked(x, torch.zeros(1, 2))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_a_product_mixin_folds_into_the_x_column_and_the_biases() -> None:
    config = {**tiny_wavenet(2), "mixin": "product"}
    model = create_model("wavenet", config)
    randomise(model, 6)
    c = torch.tensor([[0.4, -1.0]])
    x = torch.randn(1, 80)
    baked = create_model("wavenet", config)
    baked.load_state_dict(model.state_dict())
    with torch.no_grad():
        for array in baked.arrays:
            for layer in array.layers:
                w = layer.mixin.weight[:, :, 0]  # columns: x, c (2), x * c (2)
                layer.conv.bias += w[:, 1:3] @ c[0]
                layer.mixin.weight[:, 0, 0] += w[:, 3:5] @ c[0]
                layer.mixin.weight[:, 1:, :] = 0.0
        torch.testing.assert_close(baked(x, torch.zeros(1, 2)), model(x, c), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mixin", ["linear", "product"])
def test_film_follows_the_equations_and_folds_into_conv_weights_and_biases(mixin: str) -> None:
    config = {**tiny_wavenet(2), "mixin": mixin, "film": True}
    model = create_model("wavenet", config)
    randomise(model, 8)
    x = np.random.default_rng(2).standard_normal(60).astype(np.float32)
    c = np.array([0.3, -1.0], np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(x)[None], torch.from_numpy(c)[None])[0].numpy()
        automated = model(torch.from_numpy(x)[None], torch.from_numpy(c)[None, :, None].expand(1, 2, 60))
    np.testing.assert_allclose(out, reference_wavenet(model.state_dict(), config, x, c), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(automated[0].numpy(), out, rtol=1e-6, atol=1e-6)
    # Bakeable: g = 1 + G c multiplies the dilated conv's weights and bias; the setting leaves the model.
    plain = create_model("wavenet", {**tiny_wavenet(2), "mixin": mixin})
    state = {k: v for k, v in model.state_dict().items() if ".film." not in k}
    with torch.no_grad():
        for name in list(state):
            if name.endswith(".conv.weight") or name.endswith(".conv.bias"):
                prefix = name.rsplit(".conv.", 1)[0]
                g = 1.0 + model.state_dict()[f"{prefix}.film.weight"][:, :, 0] @ torch.from_numpy(c)
                state[name] = state[name] * (g[:, None, None] if name.endswith("weight") else g)
        plain.load_state_dict(state)
        baked = plain(torch.from_numpy(x)[None], torch.from_numpy(c)[None])[0].numpy()
    np.testing.assert_allclose(baked, out, rtol=1e-5, atol=1e-6)


def test_film_starts_as_the_plain_model() -> None:
    """FiLM weights start at zero (g = 1): a new film model computes what the plain one does."""
    film = create_model("wavenet", {**tiny_wavenet(2), "film": True})
    plain = create_model("wavenet", tiny_wavenet(2))
    plain.load_state_dict({k: v for k, v in film.state_dict().items() if ".film." not in k})
    x, c = torch.randn(2, 50), torch.randn(2, 2)
    torch.testing.assert_close(film(x, c), plain(x, c))
    with pytest.raises(ArchitectureError, match="'film'"):
        check_config("wavenet", {**tiny_wavenet(2), "film": "yes"})


def test_lstm_setting_folds_into_the_gate_biases() -> None:
    model = create_model("lstm", {"n_controls": 2, "hidden_size": 4, "num_layers": 1})
    randomise(model, 4)
    c = torch.tensor([[0.2, -1.0]])
    x = torch.randn(1, 50)
    baked = create_model("lstm", model.config)
    baked.load_state_dict(model.state_dict())
    with torch.no_grad():
        baked.lstm.bias_ih_l0 += baked.lstm.weight_ih_l0[:, 1:] @ c[0]
        baked.lstm.weight_ih_l0[:, 1:] = 0.0
        torch.testing.assert_close(baked(x, torch.zeros(1, 2)), model(x, c), rtol=1e-5, atol=1e-6)
    assert model.receptive_field == 1 and model(x, c).shape == (1, 50)


@pytest.mark.parametrize("architecture", ["wavenet", "lstm"])
def test_models_are_causal_and_accept_automation(architecture: str) -> None:
    config = tiny_wavenet(2) if architecture == "wavenet" else {"n_controls": 2, "hidden_size": 4,
                                                                 "num_layers": 1}
    model = create_model(architecture, config)
    randomise(model, 5)
    x = torch.randn(2, 70)
    c = torch.tensor([[0.1, 1.0], [0.9, -1.0]])
    with torch.no_grad():
        held = model(x, c)
        automated = model(x, c[:, :, None].expand(-1, -1, 70))
        torch.testing.assert_close(automated, held)
        changed = x.clone()
        changed[:, 50:] += 1.0  # the future changes...
        later = model(changed, c)
    n_out = held.shape[1]
    unchanged = n_out - (70 - 50)  # ...outputs before sample 50 do not
    torch.testing.assert_close(later[:, :unchanged], held[:, :unchanged])
    assert not torch.allclose(later[:, unchanged:], held[:, unchanged:])
    with pytest.raises(ValueError, match="setting must have shape"):
        model(x, torch.zeros(2, 3))


def test_bad_configs_are_refused_with_the_key_named() -> None:
    config = tiny_wavenet(2)
    config["arrays"][0]["head_size"] = 5
    with pytest.raises(ArchitectureError, match="head_size"):
        create_model("wavenet", config)
    config = tiny_wavenet(2)
    config["activation"] = "gelu"
    with pytest.raises(ArchitectureError, match="activation"):
        check_config("wavenet", config)
    config = tiny_wavenet(2)
    config["arrays"][1]["dilations"] = [0]
    with pytest.raises(ArchitectureError, match="dilations"):
        check_config("wavenet", config)
    with pytest.raises(ArchitectureError, match="hidden_size"):
        check_config("lstm", {"n_controls": 1, "hidden_size": "8", "num_layers": 1})
    with pytest.raises(ValueError, match="shorter than the receptive field"):
        create_model("wavenet", tiny_wavenet(2))(torch.zeros(1, 5), torch.zeros(1, 2))


# ------------------------------------------------------------------------------------- the bridge
def test_the_bridge_saves_loads_and_predicts_one_way(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from knobcap.controls import Controls, Knob, Switch
    from knobcap.models import bridge
    from knobcap.models.modelfile import ModelFileError, save_model_file

    controls = Controls(knobs=(Knob("drive"),), switches=(Switch("mode", ("a", "b")),))
    model = create_model("wavenet", tiny_wavenet(controls.vector_size))
    randomise(model, 3)
    file = bridge.model_file_from(model, controls, 48000, {"note": "test"})
    assert file.metadata == {"note": "test"} and all(w.dtype == np.float32 for w in file.weights.values())
    path = save_model_file(tmp_path / "m.knobcap", file)
    x = np.random.default_rng(1).standard_normal(3000).astype(np.float32)
    vectors = controls.to_matrix([{"drive": 2.0, "mode": "a"}, {"drive": 9.0, "mode": "b"}])
    want = np.stack([bridge.predict(model, x, v) for v in vectors])
    for loaded in (bridge.load(path), bridge.load(file)):
        assert not loaded.training
        np.testing.assert_array_equal(np.stack([bridge.predict(loaded, x, v) for v in vectors]), want)
    batch = bridge.predict_settings(model, x, vectors, chunk=700)  # one batch, in overlapping chunks
    assert batch.shape == (2, len(x))
    np.testing.assert_allclose(batch, want, rtol=1e-5, atol=1e-6)
    assert bridge.predict_settings(model, x[:0], vectors).shape == (2, 0)
    with pytest.raises(ValueError, match="mono"):
        bridge.predict(model, np.zeros((2, 10)), vectors[0])
    file.weights.pop(next(iter(file.weights)))
    with pytest.raises(ModelFileError, match="do not fit"):
        bridge.load(file)


def test_load_renderer_reaches_torch_through_the_bridge_only_and_only_without_the_engine(
        tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import ast
    import sys
    from pathlib import Path

    import knobcap.runtime.render as render
    from knobcap.controls import Controls, Knob, Switch
    from knobcap.models import bridge
    from knobcap.models.modelfile import save_model_file

    tree = ast.parse(Path(render.__file__).read_text(encoding="utf-8"))
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    allowed = ("knobcap.models", "knobcap.runtime", "knobcap.controls", "knobcap.fileio", "knobcap.metrics")
    assert not [m for m in modules if m.startswith("knobcap") and not m.startswith(allowed)]
    assert "torch" not in modules  # torch only through knobcap.models.bridge

    controls = Controls(knobs=(Knob("drive"),), switches=(Switch("mode", ("a", "b")),))
    model = create_model("wavenet", tiny_wavenet(controls.vector_size))
    randomise(model, 5)
    path = save_model_file(tmp_path / "m.knobcap", bridge.model_file_from(model, controls, 48000))
    x = np.random.default_rng(2).uniform(-0.5, 0.5, 3000).astype(np.float32)
    setting = {"drive": 7.0, "mode": "b"}
    engine_side = render.load_renderer(path, allow_torch=True)
    assert isinstance(engine_side, render.LoadedModel) and engine_side.description == "streaming engine"
    want = engine_side.render(x, setting)

    monkeypatch.setitem(sys.modules, "knobcap.runtime.engine", None)  # as if numba could not load
    with pytest.raises(render.RenderFileError, match=r"m.knobcap: the streaming engine .* cannot be imp"):
        render.load_renderer(path)
    fallback = render.load_renderer(path, allow_torch=True)
    assert isinstance(fallback, bridge.TorchModel) and fallback.description == "PyTorch model"
    assert fallback.sample_rate == 48000 and fallback.controls == controls
    np.testing.assert_allclose(fallback.render(x, setting), want, rtol=1e-4, atol=1e-5)
    assert np.max(np.abs(fallback.render(x, {"drive": 1.0, "mode": "a"}) - want)) > 1e-3
    monkeypatch.setitem(sys.modules, "knobcap.models.bridge", None)
    with pytest.raises(render.RenderFileError, match="neither the streaming engine nor PyTorch"):
        render.load_renderer(path, allow_torch=True)
