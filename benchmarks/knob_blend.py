"""How far a device (and a model) is from linear in a knob's warped coordinate between two settings.

    .venv/bin/python benchmarks/knob_blend.py SESSION --knob tone --ends 0 4.9 --at 2.5 [--run RUN]

For each switch combination and each other knob at its minimum, default and maximum, renders the
session's device (the virtual device or LV2 plugin the session names, lined up with its takes) on a
phrase of the session's test signal at the knob's two ``--ends`` and at each ``--at`` value, and prints
the ESR against the device at ``--at`` of the blend ``(1 - w) y(a) + w y(b)``, with ``w`` linear in the
knob's screened coordinate ``u`` (its warp, from the session's controls.toml) and, beside it, linear in
the dial. With ``--run``, also the model's ESR at the ends and at ``--at``, and that of the blend of the
model's own outputs at the ends: a model much worse than its own blend bends between the takes (issue
11, session 15).
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

from knobcap.capture.session import Session
from knobcap.evaluation.evaluate import aligned_device, model_predictor, session_device
from knobcap.metrics import esr
from knobcap.models.modelfile import load_model_file
from knobcap.training.run import Run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("session", type=Path)
    parser.add_argument("--knob", required=True)
    parser.add_argument("--ends", type=float, nargs=2, required=True, metavar=("A", "B"))
    parser.add_argument("--at", type=float, nargs="+", required=True)
    parser.add_argument("--run", type=Path, default=None, help="a run folder of this session")
    parser.add_argument("--start", type=float, default=20.0, help="phrase start in the signal (s)")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args(argv)

    session = Session.open(args.session)
    controls = session.controls
    knob = controls[args.knob]
    name = session_device(session.root) or controls.device or "ts808"
    device = aligned_device(session, name)  # lined up with the session's takes, as the evaluation does
    signal = session.input()
    rate = int(signal.map.sample_rate)
    start = int(args.start * rate)
    x = np.asarray(signal.audio, np.float32)[start:start + int(args.seconds * rate)]
    predict = model_predictor(load_model_file(Run(args.run).model_path)) if args.run else None
    others = [k for k in controls.knobs if k.name != knob.name and k.gain_db is None]
    levels = [sorted({k.min, k.default_value, k.max}) for k in others]
    a, b = args.ends
    print(f"device {name}, knob {knob.name} between {a:g} and {b:g}, {args.seconds:g} s from "
          f"{args.start:g} s; ESR against the device at each value")
    for combo in controls.switch_combinations():
        for values in itertools.product(*levels):
            base = {**controls.default_setting(), **combo,
                    **{k.name: v for k, v in zip(others, values, strict=True)}}

            def at(value: float, base: dict = base) -> dict:
                return {**base, knob.name: value}
            y = {v: device.process(x, rate, at(v)) for v in (a, b, *args.at)}
            m = {v: predict(x, [at(v)])[0] for v in (a, b, *args.at)} if predict else None
            label = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in base.items() if k != knob.name)
            parts = []
            for v in args.at:
                w = (knob.to_unit(v) - knob.to_unit(a)) / (knob.to_unit(b) - knob.to_unit(a))
                dial = (v - a) / (b - a)
                part = (f"{v:g}: blend in u {esr((1 - w) * y[a] + w * y[b], y[v]):.4f}, in the dial "
                        f"{esr((1 - dial) * y[a] + dial * y[b], y[v]):.4f}")
                if m is not None:
                    own = esr((1 - w) * m[a] + w * m[b], y[v])
                    part += (f"; model {esr(m[v], y[v]):.4f} (ends {esr(m[a], y[a]):.4f} "
                             f"{esr(m[b], y[b]):.4f}), its own blend {own:.4f}")
                parts.append(part)
            print(f"  {label}: " + " | ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
