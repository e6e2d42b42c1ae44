"""CPU cost of the streaming engine beside PyTorch eager, per model size (one thread, 48 kHz).

Runtime: about 2-4 minutes on a 2-core machine (the PyTorch WaveNet rows dominate).

    NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/cpu_cost.py [--seconds 3] [--repeats 3]

Cost = CPU seconds (time.process_time) per second of 48 kHz mono audio, median of the repeats, with
blocks of 64 and 512 samples handed to ``Engine.process_block`` from Python one by one, as a host
would (so the per-call overhead is included). PyTorch eager streams the same way under
``torch.no_grad``: the WaveNet's own modules run block by block with a cache of each layer's past
input (the fair streaming form; ``--naive-torch`` instead recomputes the whole receptive field for every
block), the LSTM carries its state.
Weights are random (cost does not depend on them). Sizes: knobcap's built-in defaults, plus NAM A1's
standard / lite / feather / nano WaveNet sizes and LSTM sizes for reference. Goal (issue 5): the
default model at most 0.02 cores at block 64 on this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

from knobcap.controls import Controls, Knob, Switch
from knobcap.models.architectures import default_config, weight_shapes
from knobcap.models.modelfile import ModelFile
from knobcap.runtime.engine import Engine

RATE = 48_000
CONTROLS = Controls(knobs=(Knob("drive"), Knob("tone")), switches=(Switch("diodes", ("silicon", "led")),))


def wavenet(ch1: int, ch2: int, layers: int = 10) -> dict:
    d = [1 << i for i in range(layers)]
    return {"n_controls": CONTROLS.vector_size, "head_scale": 0.02, "activation": "tanh",
            "arrays": [{"channels": ch1, "head_size": ch2, "kernel_size": 3, "dilations": d},
                       {"channels": ch2, "head_size": 1, "kernel_size": 3, "dilations": d}]}


def sizes() -> list[tuple[str, str, dict]]:
    n = CONTROLS.vector_size
    default = default_config("wavenet", n)
    shape = "->".join(str(a["channels"]) for a in default["arrays"])
    layers = "+".join(str(len(a["dilations"])) for a in default["arrays"])
    lstm = default_config("lstm", n)
    return [
        (f"wavenet default ({shape}, {layers} layers)", "wavenet", default),
        # issue 12's conditioning options on the default (see benchmarks/conditioning.py)
        ("  + cond_hidden 16", "wavenet", {**default, "cond_hidden": 16}),
        ("  + post_fir 32 taps (hidden 16)", "wavenet", {**default, "post_fir": {"taps": 32, "hidden": 16}}),
        ("  + cond_hidden 16 + post_fir 32", "wavenet",
         {**default, "cond_hidden": 16, "post_fir": {"taps": 32, "hidden": 16}}),
        ("  at 8->4 channels (the default before issue 11)", "wavenet",
         {**default, "arrays": [{**default["arrays"][0], "channels": 8, "head_size": 4},
                                {**default["arrays"][1], "channels": 4}]}),
        ("wavenet 12->6 (10+10)", "wavenet", wavenet(12, 6)),
        ("wavenet NAM standard (16->8)", "wavenet", wavenet(16, 8)),
        ("wavenet NAM feather (8->4)", "wavenet", wavenet(8, 4)),
        ("wavenet NAM nano (4->2)", "wavenet", wavenet(4, 2)),
        (f"lstm default ({lstm['hidden_size']} x {lstm['num_layers']})", "lstm", lstm),
        ("lstm 16", "lstm", {"n_controls": n, "hidden_size": 16, "num_layers": 1}),
        ("lstm 40 (Proteus)", "lstm", {"n_controls": n, "hidden_size": 40, "num_layers": 1}),
    ]


def random_model(architecture: str, config: dict) -> ModelFile:
    rng = np.random.default_rng(0)
    weights = {k: (0.2 * rng.standard_normal(s)).astype(np.float32)
               for k, s in weight_shapes(architecture, config).items()}
    return ModelFile(architecture, config, CONTROLS, RATE, weights)


def engine_cost(engine: Engine, x: np.ndarray, block: int, repeats: int) -> float:
    y = np.empty_like(x)
    runs = []
    for _ in range(repeats):
        start = time.process_time()
        for s in range(0, x.size, block):
            engine.process_block(x[s:s + block], y[s:s + block])
        runs.append((time.process_time() - start) / (x.size / RATE))
    return statistics.median(runs)


def torch_cost(architecture: str, model: ModelFile, x: np.ndarray, block: int, naive: bool = False) -> float:
    import torch

    from knobcap.models.base import create_model

    torch.set_num_threads(1)
    net = create_model(architecture, model.config).eval()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.weights.items()})
    c = torch.from_numpy(model.controls.to_vector(model.controls.default_setting()))[None]
    rf = net.receptive_field
    xt = torch.from_numpy(np.concatenate([np.zeros(rf - 1, np.float32), x]))
    start = time.process_time()
    with torch.no_grad():
        if architecture == "lstm":
            state = None
            cond = c[:, None, :]
            for s in range(0, x.size, block):
                seg = xt[s:s + block][None, :, None]
                inp = torch.cat([seg, cond.expand(1, seg.shape[1], -1)], dim=2)
                out, state = net.lstm(inp, state)
                net.head(out)
        elif naive:
            for s in range(0, x.size, block):
                net(xt[s:s + rf - 1 + block][None], c)
        else:
            stream_wavenet(net, torch.from_numpy(x), c, block)
    return (time.process_time() - start) / (x.size / RATE)


def stream_wavenet(net, x, c, block: int):
    """The PyTorch WaveNet block by block, each layer keeping its last (k - 1) d inputs."""
    import torch

    from knobcap.models.wavenet import activation

    act = net.config["activation"]
    caches = [[torch.zeros(1, lay.conv.in_channels, (lay.conv.kernel_size[0] - 1) * lay.conv.dilation[0])
               for lay in array.layers] for array in net.arrays]
    outputs = []
    for s in range(0, x.numel(), block):
        xb = x[s:s + block][None, None]
        cond = torch.cat([xb, c[:, :, None].expand(-1, -1, xb.shape[2])], dim=1)
        h, head = xb, None
        for a, array in enumerate(net.arrays):
            h = array.rechannel(h)
            for j, layer in enumerate(array.layers):
                full = torch.cat([caches[a][j], h], dim=2)
                caches[a][j] = full[:, :, full.shape[2] - caches[a][j].shape[2]:]
                z = layer.conv(full) + layer.mixin(cond)
                out = activation(act, z)
                h = h + layer.out(out)
                head = out if head is None else head + out
            head = array.head_rechannel(head)
        outputs.append(float(net.config["head_scale"]) * head[0, 0])
    return torch.cat(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="audio per engine measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-seconds", type=float, default=1.0, help="audio per PyTorch measurement")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--naive-torch", action="store_true",
                        help="PyTorch WaveNet recomputes its receptive field every block")
    args = parser.parse_args()
    x = (0.3 * np.random.default_rng(1).standard_normal(int(args.seconds * RATE))).astype(np.float32)
    xt = x[: int(args.torch_seconds * RATE)]
    print(f"CPU cores (CPU s per s of {RATE} Hz audio, one thread); engine: median of {args.repeats} x "
          f"{args.seconds:g} s; torch eager: {args.torch_seconds:g} s")
    print(f"{'model':36s} {'params':>7s} {'jit s':>6s} {'eng 64':>8s} {'eng 512':>8s} {'torch 64':>9s} "
          f"{'torch 512':>9s}")
    for label, architecture, config in sizes():
        model = random_model(architecture, config)
        start = time.perf_counter()
        engine = Engine(model)
        engine.process_block(x[:64], np.empty(64, np.float32))
        jit = time.perf_counter() - start
        cost = [engine_cost(engine, x, b, args.repeats) for b in (64, 512)]
        if args.no_torch:
            ref = [float("nan")] * 2
        else:
            ref = [torch_cost(architecture, model, xt, b, args.naive_torch) for b in (64, 512)]
        print(f"{label:36s} {model.n_parameters:7d} {jit:6.2f} {cost[0]:8.4f} {cost[1]:8.4f} "
              f"{ref[0]:9.3f} {ref[1]:9.3f}", flush=True)


if __name__ == "__main__":
    main()
