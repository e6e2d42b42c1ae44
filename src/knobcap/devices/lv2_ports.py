"""An LV2 plugin's ports, read from ``lv2info URI``, and the knobcap controls they become.

``parse_lv2info(text)`` is a pure function of lv2info's text (lilv 0.24): a header (``Name:``,
``Has latency:``, ``Required Features:``...) then one block per port::

    \\tPort 5:
    \\t\\tType:        http://lv2plug.in/ns/lv2core#ControlPort
    \\t\\t             http://lv2plug.in/ns/lv2core#InputPort       (a continuation line)
    \\t\\tScale Points:
    \\t\\t\\t0 = "plain"
    \\t\\tSymbol:      MODE
    \\t\\tProperties:  http://lv2plug.in/ns/lv2core#enumeration

``describe_controls(plugin, select, fixed)`` turns the control input ports into knobs and switches:

* a ``toggled`` port -> a switch ``off``/``on`` (port values min/max);
* an ``enumeration`` or ``integer`` port with two or more scale points -> a switch whose positions are
  the scale points' labels made safe (lowercase, ``[a-z0-9_-]``), in the order of their values;
* an ``integer`` port without scale points and at most ``MAX_INTEGER_POSITIONS`` values -> a switch
  with the numbers as positions; a wider one -> a knob whose value is rounded when rendered;
* any other control port -> a knob over [minimum, maximum] at the plugin's default, with taper ``log``
  when the port is ``logarithmic`` and its minimum is above 0, ``linear`` otherwise.

Left out (never captured; the host keeps them at their default, or sets them, below): control output
ports (latency, meters, notify), ports designated ``lv2:enabled`` (set to 1: the plugin runs),
``lv2:freeWheeling`` (set to 0) or a ``time:`` quantity (a host's tempo), ``trigger`` and ``notOnGUI``
ports, ports named bypass/enable/notify/schedule, and atom and CV ports (not controls at all).

Knob and switch names come from the ports' names ("Drive" -> ``drive``), made safe and unique.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from knobcap.controls import Controls, ControlsError, Knob, Switch
from knobcap.devices.errors import DeviceError

MAX_INTEGER_POSITIONS = 12  # an integer port with at most this many values becomes a switch
_HOST_SET = {"enabled": 1.0, "freeWheeling": 0.0}  # designations the host sets, and their value
_NON_MUSICAL_NAME = re.compile(r"^(bypass|enable|enabled|notify|schedule)$|notify|schedule", re.I)
_KEY = re.compile(r"^([A-Za-z][A-Za-z ]*):\s*(.*)$")
_SCALE_POINT = re.compile(r'^(\S+) = "(.*)"$')
_PORT = re.compile(r"^Port (\d+):$")


def local_name(uri: str) -> str:
    """The part of a URI after ``#`` (or after the last ``/``): ``...lv2core#InputPort`` -> ``InputPort``."""
    return uri.rsplit("#", 1)[-1] if "#" in uri else uri.rstrip("/").rsplit("/", 1)[-1]


def feature_name(uri: str) -> str:
    """A feature URI in the short form people write: ``.../ext/urid#map`` -> ``urid:map``."""
    if "#" not in uri:
        return uri
    head, tail = uri.rsplit("#", 1)
    return f"{head.rstrip('/').rsplit('/', 1)[-1]}:{tail}"


@dataclass(frozen=True)
class Port:
    """One port as lv2info lists it (types, properties and designation by their local names)."""

    index: int
    symbol: str
    name: str
    types: frozenset[str]
    minimum: float | None = None
    maximum: float | None = None
    default: float | None = None
    properties: frozenset[str] = frozenset()
    designation: str = ""
    scale_points: tuple[tuple[float, str], ...] = ()  # (value, label), by increasing value

    @property
    def is_input(self) -> bool:
        return "InputPort" in self.types

    @property
    def is_output(self) -> bool:
        return "OutputPort" in self.types

    @property
    def is_control(self) -> bool:
        return "ControlPort" in self.types

    @property
    def is_audio(self) -> bool:
        return "AudioPort" in self.types

    @property
    def kind(self) -> str:
        """``control``, ``audio``, ``atom``, ``cv`` or the first unknown type's local name."""
        for label, local in (("control", "ControlPort"), ("audio", "AudioPort"), ("atom", "AtomPort"),
                             ("cv", "CVPort")):
            if local in self.types:
                return label
        others = sorted(self.types - {"InputPort", "OutputPort"})
        return others[0] if others else "untyped"


@dataclass(frozen=True)
class PluginInfo:
    """An LV2 plugin: its URI, name, ports, latency port and required host features (URIs)."""

    uri: str
    name: str
    ports: tuple[Port, ...]
    latency_port: int | None = None
    required_features: tuple[str, ...] = ()

    @property
    def audio_inputs(self) -> list[Port]:
        return [p for p in self.ports if p.is_audio and p.is_input]

    @property
    def audio_outputs(self) -> list[Port]:
        return [p for p in self.ports if p.is_audio and p.is_output]

    @property
    def unhostable_ports(self) -> list[Port]:
        """Ports that are neither audio nor control: lv2apply refuses plugins that have them."""
        return [p for p in self.ports if not (p.is_audio or p.is_control)
                and "connectionOptional" not in p.properties]


def parse_lv2info(text: str, uri: str | None = None) -> PluginInfo:
    """The plugin lv2info describes in ``text`` (see the module docstring for the format)."""
    lines = text.splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    uri = uri or first
    if not first or first.startswith(("Usage", "Plugin not found")) or not lines[0].strip():
        raise DeviceError(f"lv2info gave no plugin description for {uri!r}; list the installed plugins "
                          "with 'lv2ls'.")
    header: dict[str, list[str]] = {}
    blocks: list[dict[str, list[str]]] = []
    points: list[list[tuple[float, str]]] = []
    current = header
    key = ""
    for line in lines[1:]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip("\t"))
        rest = line[depth:]
        port = _PORT.match(rest) if depth == 1 else None
        if port:
            current = {"index": [port.group(1)]}
            blocks.append(current)
            points.append([])
            key = ""
            continue
        level = 2 if blocks else 1  # keys of a port block are one tab deeper than the header's
        if depth == level and rest[:1].isspace():  # a continuation of the previous key's list
            if key:
                current.setdefault(key, []).append(rest.strip())
        elif depth > level and blocks and key == "Scale Points":
            match = _SCALE_POINT.match(rest.strip())
            if match:
                points[-1].append((_number(match.group(1), uri, "scale point"), match.group(2)))
        elif depth == level:
            match = _KEY.match(rest)
            if match:
                key = match.group(1).strip()
                current.setdefault(key, [])
                if match.group(2).strip():
                    current[key].append(match.group(2).strip())
    ports = tuple(_port(block, sorted(pts), uri) for block, pts in zip(blocks, points, strict=True))
    latency = _first(header, "Has latency")
    reported = re.search(r"port (\d+)", latency or "")
    return PluginInfo(uri=uri, name=_first(header, "Name") or uri, ports=ports,
                      latency_port=int(reported.group(1)) if reported else None,
                      required_features=tuple(header.get("Required Features", [])))


def _first(block: Mapping[str, list[str]], key: str) -> str | None:
    values = block.get(key)
    return values[0] if values else None


def _number(text: str | None, uri: str, what: str) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DeviceError(f"lv2info for {uri}: {what} {text!r} is not a number.") from None


def _optional_number(block: Mapping[str, list[str]], key: str, uri: str) -> float | None:
    text = _first(block, key)
    if text is None:
        return None
    value = _number(text, uri, key.lower())
    return value if math.isfinite(value) else None


def _port(block: Mapping[str, list[str]], scale_points: list[tuple[float, str]], uri: str) -> Port:
    index = int(block["index"][0])
    symbol = _first(block, "Symbol")
    if not symbol:
        raise DeviceError(f"lv2info for {uri}: port {index} has no symbol.")
    return Port(index=index, symbol=symbol, name=_first(block, "Name") or symbol,
                types=frozenset(local_name(t) for t in block.get("Type", [])),
                minimum=_optional_number(block, "Minimum", uri),
                maximum=_optional_number(block, "Maximum", uri),
                default=_optional_number(block, "Default", uri),
                properties=frozenset(local_name(p) for p in block.get("Properties", [])),
                designation=local_name(_first(block, "Designation") or ""),
                scale_points=tuple(scale_points))


# --------------------------------------------------------------------------------- controls
def safe_name(text: str) -> str:
    """Lowercase, runs of anything outside ``[a-z0-9_-]`` as ``_``, trimmed: "Low Cut" -> ``low_cut``."""
    return re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_-")


def _unique(names: Iterable[str], fallback: str, must_start_with_letter: bool) -> list[str]:
    out: list[str] = []
    for raw in names:
        name = raw or fallback
        if must_start_with_letter and not name[0].isalpha():
            name = f"{fallback}_{name}"
        candidate, n = name, 2
        while candidate in out:
            candidate, n = f"{name}_{n}", n + 1
        out.append(candidate)
    return out


@dataclass(frozen=True)
class PortControl:
    """A control and the port it drives; ``values`` are a switch's port values, one per position."""

    control: Knob | Switch
    symbol: str
    values: tuple[float, ...] = ()
    integer: bool = False

    def port_value(self, value: float | str) -> float:
        """The number sent to the port for a knob value or a switch position."""
        if isinstance(self.control, Switch):
            return self.values[self.control.positions.index(str(value))]
        number = float(value)
        return float(round(number)) if self.integer else number


@dataclass(frozen=True)
class Lv2Controls:
    """A plugin's controls: ``controls`` (the captured ones), ``fixed`` (the others, name -> value),
    ``ports`` (every musical control by name), ``host_values`` (symbol -> value the host always sets)
    and ``left_out`` (symbol -> why a port is not a control)."""

    plugin: PluginInfo
    controls: Controls
    fixed: dict[str, float | str]
    ports: dict[str, PortControl]
    host_values: dict[str, float] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)

    def port_values(self, setting: Mapping[str, object]) -> dict[str, float]:
        """Port symbol -> value for a (validated) setting of the captured controls plus the fixed ones."""
        values = dict(self.host_values)
        for name, value in {**self.fixed, **setting}.items():
            port = self.ports[name]
            values[port.symbol] = port.port_value(value)  # type: ignore[arg-type]
        return values


def _left_out_reason(port: Port) -> str | None:
    """Why a control (or atom, CV...) port is not captured; None for a musical control or audio port."""
    if port.is_audio:
        return None
    if not port.is_control:
        return f"{port.kind} port"
    if port.is_output:
        return "latency output" if port.designation == "latency" else "control output"
    if port.designation in _HOST_SET:
        return f"lv2:{port.designation}, set to {_HOST_SET[port.designation]:g} by the host"
    if port.designation:
        return f"designated {port.designation} (a host value)"
    for prop in ("trigger", "notOnGUI"):
        if prop in port.properties:
            return f"{prop} port"
    if _NON_MUSICAL_NAME.search(port.symbol) or _NON_MUSICAL_NAME.search(port.name):
        return "not a musical control (bypass, enable, notify or schedule)"
    return None


def _control_of(port: Port, name: str, uri: str) -> PortControl:
    low = port.minimum if port.minimum is not None else 0.0
    high = port.maximum if port.maximum is not None else 1.0
    default = port.default if port.default is not None else low
    integer = "integer" in port.properties
    if "toggled" in port.properties:
        return PortControl(Switch(name, ("off", "on"), "on" if default > (low + high) / 2 else "off"),
                           port.symbol, (low, high))
    points = list(port.scale_points)
    if not points and integer and high - low < MAX_INTEGER_POSITIONS and low == round(low):
        points = [(float(v), str(v)) for v in range(int(low), math.floor(high) + 1)]
    if len(points) >= 2 and (integer or "enumeration" in port.properties):
        labels = _unique((safe_name(label) for _, label in points), "position", False)
        nearest = min(range(len(points)), key=lambda i: abs(points[i][0] - default))
        return PortControl(Switch(name, tuple(labels), labels[nearest]), port.symbol,
                           tuple(v for v, _ in points))
    if not low < high:
        raise DeviceError(f"plugin {uri}: port {port.symbol!r} has range {low:g}..{high:g}; it cannot be a "
                          "knob. Leave it out of --controls.")
    taper = "log" if "logarithmic" in port.properties and low > 0 else "linear"
    return PortControl(Knob(name, low, high, min(max(default, low), high), taper), port.symbol,
                       integer=integer)


def describe_controls(plugin: PluginInfo, select: Sequence[str] | None = None,
                      fixed: Mapping[str, object] | None = None) -> Lv2Controls:
    """The plugin's musical controls; ``select`` names those to capture (all when None), the others are
    fixed at ``fixed[name]`` or at the plugin's default."""
    musical: list[Port] = []
    left_out: dict[str, str] = {}
    host_values: dict[str, float] = {}
    for port in plugin.ports:
        reason = _left_out_reason(port)
        if reason is None and port.is_control:
            musical.append(port)
        elif reason is not None:
            left_out[port.symbol] = reason
            if port.is_control and port.is_input and port.designation in _HOST_SET:
                host_values[port.symbol] = _HOST_SET[port.designation]
    names = _unique((safe_name(p.name) or safe_name(p.symbol) for p in musical), "control", True)
    ports = {name: _control_of(port, name, plugin.uri) for name, port in zip(names, musical, strict=True)}
    if not ports:
        raise DeviceError(f"plugin {plugin.uri} has no musical controls to capture (left out: "
                          f"{', '.join(left_out) or 'none'}).")
    chosen = list(ports) if select is None else [s.strip() for s in select if s.strip()]
    unknown = [name for name in chosen if name not in ports]
    if unknown or not chosen:
        problem = f"no control named {unknown[0]!r}" if unknown else "no controls selected"
        raise DeviceError(f"plugin {plugin.name}: {problem}; choose from {', '.join(ports)}.")
    if len(set(chosen)) != len(chosen):
        raise DeviceError(f"plugin {plugin.name}: a control is selected twice in {', '.join(chosen)}.")
    fixed = dict(fixed or {})
    clash = [name for name in fixed if name in chosen or name not in ports]
    if clash:
        name = clash[0]
        raise DeviceError(
            f"plugin {plugin.name}: {name!r} is captured, so it cannot also be fixed; drop it from the "
            "fixed values." if name in chosen else
            f"plugin {plugin.name}: cannot fix {name!r}: no such control; choose from {', '.join(ports)}.")
    others = Controls(knobs=tuple(p.control for p in ports.values() if isinstance(p.control, Knob)),
                      switches=tuple(p.control for p in ports.values() if isinstance(p.control, Switch)),
                      name=plugin.name)
    values = {**others.default_setting(), **fixed}
    try:
        clean = others.validate_setting(values, where=f"plugin {plugin.name}, fixed values")
    except ControlsError as error:
        raise DeviceError(str(error)) from None
    picked = [ports[name].control for name in chosen]
    controls = Controls(knobs=tuple(c for c in picked if isinstance(c, Knob)),
                        switches=tuple(c for c in picked if isinstance(c, Switch)), name=plugin.name)
    return Lv2Controls(plugin=plugin, controls=controls,
                       fixed={name: clean[name] for name in ports if name not in chosen},
                       ports=ports, host_values=host_values, left_out=left_out)
