"""Guards for the layout: no import cycles, no import from a lower layer to a higher one, a runtime that
imports and plays a model with torch blocked, and a thin cli.py.

Imports are read from the source with ``ast`` (module level and inside functions alike), so a test
reads the code as it is, not what happens to be imported at run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import knobcap

PACKAGE = Path(knobcap.__file__).resolve().parent
ROOT = "knobcap"

#: Low to high. A module may import from its own layer or a lower one. Keys are the first name under
#: knobcap/ (a module or a subpackage); "" is the package root (its public API may import anything).
LAYERS: list[set[str]] = [
    {"fileio", "metrics", "registry", "dsp", "limits"},
    {"controls"},
    {"devices", "models"},
    {"capture"},
    {"runtime"},
    {"training"},
    {"evaluation"},
    {"play"},
    {"demo"},
    {"console", "cli", ""},
]
LAYER_OF = {name: rank for rank, names in enumerate(LAYERS) for name in names}

#: Known violations, each to be fixed (then its entry removed: the strict xfail turns red once it is).
KNOWN_LAYER_BREAKS: dict[str, str] = {
}
KNOWN_CYCLES: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    target: str  # a knobcap module
    line: int


def _resolve(source: str, level: int, module: str | None) -> str:
    """The absolute name a ``from`` import refers to (``level`` dots relative to ``source``)."""
    if level == 0:
        return module or ""
    is_package = MODULES[source].name == "__init__.py"
    base = source.split(".")
    base = base[: len(base) - level + (1 if is_package else 0)]
    return ".".join(base + ([module] if module else []))


def _nearest_module(name: str) -> str | None:
    """The longest prefix of ``name`` that is a knobcap module (a name imported from it is not one)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def imports_of(source: str) -> Iterator[Import]:
    """Every knobcap module ``source`` imports, anywhere in its body (once per statement)."""
    tree = ast.parse(MODULES[source].read_text(encoding="utf-8"), filename=str(MODULES[source]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(source, node.level, node.module)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                     for alias in node.names]
        else:
            continue
        targets = {_nearest_module(n) for n in names if n == ROOT or n.startswith(ROOT + ".")}
        for target in sorted(t for t in targets if t is not None and t != source):
            yield Import(target, node.lineno)


GRAPH: dict[str, list[Import]] = {name: list(imports_of(name)) for name in MODULES}


def layer(module: str) -> int:
    """The rank of a module's layer in LAYERS (the root package is importable from anywhere: see above)."""
    key = module.split(".")[1] if "." in module else ""
    return LAYER_OF[key]


# ------------------------------------------------------------------------------------------ layers
def test_every_module_has_a_layer() -> None:
    unplaced = sorted({m.split(".")[1] for m in MODULES if "." in m} - set(LAYER_OF))
    assert not unplaced, f"place {unplaced} in LAYERS of tests/test_layering.py (low to high)"


def test_every_known_break_names_a_module() -> None:
    stale = sorted(set(KNOWN_LAYER_BREAKS) - set(MODULES))
    assert not stale, f"remove {stale} from KNOWN_LAYER_BREAKS: no such module any more"


def _layer_cases() -> list[object]:
    cases: list[object] = []
    for name in MODULES:
        reason = KNOWN_LAYER_BREAKS.get(name)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        cases.append(pytest.param(name, id=name, marks=marks))
    return cases


@pytest.mark.parametrize("module", _layer_cases())
def test_no_import_from_a_higher_layer(module: str) -> None:
    upward = [f"{MODULES[module].relative_to(PACKAGE.parent)}:{i.line} imports {i.target}"
              for i in GRAPH[module] if i.target != ROOT and layer(i.target) > layer(module)]
    assert not upward, "a lower layer imports a higher one:\n" + "\n".join(upward)


# ------------------------------------------------------------------------------------------ cycles
def strongly_connected(graph: dict[str, list[Import]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that reach each other (the cycles), iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                nxt = step.target
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def _describe(group: list[str]) -> str:
    members = set(group)
    edges = [f"  {a} -> {i.target} (line {i.line})" for a in group for i in GRAPH[a] if i.target in members]
    return "\n".join(["cycle: " + ", ".join(group), *edges])


def _cycle_cases() -> list[object]:
    cases: list[object] = [pytest.param(None, id="none-beyond-the-known")]
    for key, reason in KNOWN_CYCLES.items():
        cases.append(pytest.param(key, id=key, marks=pytest.mark.xfail(strict=True, reason=reason)))
    return cases


@pytest.mark.parametrize("known", _cycle_cases())
def test_no_import_cycles(known: str | None) -> None:
    groups = {", ".join(g): g for g in strongly_connected(GRAPH)}
    if known is None:
        new = [_describe(g) for key, g in groups.items() if key not in KNOWN_CYCLES]
        assert not new, "\n".join(new)
    else:
        assert known not in groups, _describe(groups[known])


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": [Import("b", 1)], "b": [Import("c", 1)], "c": [Import("a", 1), Import("d", 1)], "d": []}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": [Import("b", 1)], "b": []}) == []


# ------------------------------------------------------------------------------------------ cli
CLI_LIMIT = 300
OLD_CLI = PACKAGE / "cli.py"


def cli_files() -> list[Path]:
    """cli.py, or every module of a cli/ package."""
    return [OLD_CLI] if OLD_CLI.is_file() else sorted((PACKAGE / "cli").glob("*.py"))


@pytest.mark.xfail(OLD_CLI.is_file(), strict=True, raises=AssertionError,
                   reason="the one-file cli.py is being split into a thin cli/ package (issue 10)")
def test_cli_is_thin() -> None:
    files = cli_files()
    assert files, "no cli.py and no cli/ package"
    long = {f.name: n for f in files if (n := len(f.read_text(encoding="utf-8").splitlines())) >= CLI_LIMIT}
    assert not long, f"CLI files of {CLI_LIMIT} lines or more (move library logic out): {long}"


# ------------------------------------------------------------------------------------------ no torch
_BLOCK_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "lightning", "pytorch_lightning"):
            raise ImportError(f"{name} is blocked: the runtime must not need it")
        return None

sys.meta_path.insert(0, NoTorch())
"""

_RUNTIME = _BLOCK_TORCH + """
import json
import numpy as np
import knobcap.models.modelfile
import knobcap.runtime.engine
import knobcap.runtime.export
from knobcap.runtime.engine import Engine

engine = Engine.from_file(sys.argv[1], setting={"drive": 7.0, "tone": 3.0, "diodes": "led"})
x = (0.5 * np.sin(np.arange(4800) * 0.05)).astype(np.float32)
y = engine.process(x, block_size=256)
rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
print(json.dumps({"torch": "torch" in sys.modules, "rms": rms}))
"""

_LOAD_MODEL = _BLOCK_TORCH + """
import json
import numpy as np
import knobcap

model = knobcap.load_model(sys.argv[1])
x = (0.5 * np.sin(np.arange(4800) * 0.05)).astype(np.float32)
y = np.asarray(model(x, 48000, drive=7.0, tone=3.0, diodes="led"))
rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
from knobcap.runtime.render import load_renderer  # the report's loader: torch only as a fallback

renderer = load_renderer(sys.argv[1], allow_torch=True)
same = bool(np.allclose(renderer.render(x, {"drive": 7.0, "tone": 3.0, "diodes": "led"}), y, atol=1e-6))
print(json.dumps({"torch": "torch" in sys.modules, "rms": rms, "renderer": renderer.description,
                  "same": same}))
"""


def _run_blocked(code: str, model: Path) -> dict:
    import json

    out = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["torch"] is False
    return result


def test_the_blocker_blocks_torch(tmp_path: Path) -> None:
    code = _BLOCK_TORCH + "import torch\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "torch is blocked" in out.stderr


def test_runtime_plays_a_model_with_torch_blocked(tmp_path: Path) -> None:
    from playkit import tiny_model

    result = _run_blocked(_RUNTIME, tiny_model(tmp_path / "m.knobcap"))
    assert np.isfinite(result["rms"]) and result["rms"] > 1e-4  # it made sound, not silence or NaN


def test_load_model_works_with_torch_blocked(tmp_path: Path) -> None:
    if not hasattr(knobcap, "load_model"):
        pytest.skip("knobcap.load_model (issue 10's torch-free public API) is not at the package root yet")
    from playkit import tiny_model

    result = _run_blocked(_LOAD_MODEL, tiny_model(tmp_path / "m.knobcap"))
    assert np.isfinite(result["rms"]) and result["rms"] > 1e-4
    assert result["renderer"] == "streaming engine" and result["same"]
