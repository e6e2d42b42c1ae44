"""The full ``knobcap demo`` at one seed with today's default model or the pre-issue-12 one (no output FIR).

    NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/demo_model_pair.py --seed 1 --model fir|nofir --out DIR

Runs :func:`knobcap.demo.run_demo` with ``DemoConfig.full(seed)``; ``nofir`` trains the default WaveNet
config without its ``post_fir`` stage. Start both variants side by side (one training thread each) so
that both see the same machine load, then compare their printed held-out figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from knobcap.demo import DemoConfig, run_demo
from knobcap.models.architectures import default_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=["fir", "nofir"], default="fir")
    parser.add_argument("--out", type=Path, required=True, help="a new demo folder")
    args = parser.parse_args()
    config = DemoConfig.full(seed=args.seed)
    if args.model == "nofir":
        model = default_config("wavenet", 0)  # n_controls is set from the session's controls
        model.pop("post_fir")
        config.training["model"] = model
    run_demo(args.out, config)


if __name__ == "__main__":
    main()
