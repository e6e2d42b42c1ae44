"""Sequential refinement (``knobcap plan DIR --more N``): after a first model, record more settings where
it is least trustworthy.

**Criterion.** A trained run already holds an error figure for every recorded take: the ESR on held-out
time at each trained setting and on the held-out settings (``metrics.json`` from ``knobcap eval``; else
training's ``summary.json``; else the last row of ``train_log.csv``). Those are the only errors a real
pedal gives without more recording, and they cost nothing to reuse (an ensemble or leave-one-take-out
would need several more trainings on a CPU). An error surrogate spreads them over the knob space: in
the knob coordinates ``u`` (warped, so equal steps are equal steps of sound), the predicted log-ESR at
a candidate is a Gaussian-kernel average of the takes' log-ESRs (bandwidth: half the median distance
between a take and its nearest neighbour of the same switch combination; takes of another combination
count ``_OTHER_COMBINATION`` times as much; a weak prior pulls it to the mean). The surrogate only
says *where the model is weak*; a candidate's error also grows with its distance to what was recorded,
so the score is

    score(c) = exp(surrogate(c)) x distance(c, nearest planned setting of c's switch combination)

(a combination with no setting counts the cube's diagonal). The ``N`` settings are picked greedily: the
best candidate joins the planned settings, the distances are updated, and the next one is picked, so
a batch does not bunch up. Candidates per combination: the 3^k corners, edge and face centres of the
knob cube (the ends, where the TS808's errors concentrate), 8 random points on each face, and ``64 k``
uniform points, rounded to what a user can dial; all drawn from ``--seed``.

The new takes are appended to plan.csv (role ``train``, numbered after the last take), in a
knob-move-saving order that starts from the last planned setting; existing rows and recordings are
never touched.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from knobcap.capture.design import (
    DEFAULT_COSTS,
    MoveCosts,
    SessionTime,
    audible_space,
    cost_matrix,
    held_gain_knobs,
    knob_units,
    session_time,
)
from knobcap.capture.session import PlannedTake, Session, SessionError, plan_csv_text, take_name
from knobcap.controls import Controls, Setting, setting_from_units
from knobcap.fileio import write_text_atomic
from knobcap.limits import MAX_TAKES
from knobcap.training.run import Run, RunError

_OTHER_COMBINATION = 0.3  # weight of a take of another switch combination in the surrogate
_PRIOR = 0.05  # weight of the mean log-ESR (keeps the surrogate finite far from every take)
_ESR_FLOOR = 1e-6


class RefineError(ValueError):
    """No refinement can be planned; the message names the folder or option and what to do."""


@dataclass(frozen=True)
class Refinement:
    """What :func:`plan_more` added."""

    run: str
    source: str  # the file the take errors came from
    added: list[PlannedTake]
    scores: list[float]  # predicted ESR x distance of each added take, in the order picked
    time: SessionTime  # of the added takes, from the last planned setting on


# ------------------------------------------------------------------------------------ the run
def newest_run(root: Path) -> Run:
    """The run of a session whose model file is the newest."""
    folder = Run.runs_dir(root)
    runs = [Run(p) for p in sorted(folder.iterdir())] if folder.is_dir() else []
    runs = [r for r in runs if r.model_path.is_file()]
    if not runs:
        raise RefineError(f"{folder}: no trained model to refine from; run 'knobcap train {root}' first "
                          f"('plan --more' picks settings where the model is weakest).")
    return max(runs, key=lambda r: (r.model_path.stat().st_mtime_ns, r.name))


def take_errors(run: Run, takes: Sequence[str]) -> tuple[dict[str, float], str]:
    """Each take's ESR from a run (held-out time, and held-out settings), and the file it came from."""
    known = set(takes)
    try:
        metrics = run.read_metrics()
        if isinstance(metrics, dict):
            out = {str(row["take"]): float(row["esr"])
                   for part in ("heldout_time", "heldout_settings")
                   for row in (metrics.get(part) or {}).get("rows", []) if row.get("take") in known}
            if out:
                return out, str(run.metrics_path)
        summary = run.read_summary()
        if isinstance(summary, dict):
            out = {str(name): float(value) for part in ("validation_esr", "heldout_esr")
                   for name, value in (summary.get(part) or {}).items() if name in known}
            if out:
                return out, str(run.summary_path)
        rows = run.read_log()
        if rows:
            last = rows[-1]
            out = {name: float(last[f"esr_{name}"]) for name in takes if last.get(f"esr_{name}")}
            if out:
                return out, str(run.log_path)
    except (RunError, TypeError, ValueError, KeyError, AttributeError) as error:
        raise RefineError(f"{run.path}: its figures cannot be read ({error}); run 'knobcap eval "
                          f"{run.path}' again, or pick another run with --run.") from None
    raise RefineError(f"{run.path}: no per-take errors (metrics.json, summary.json or train_log.csv); "
                      f"finish 'knobcap train' (or run 'knobcap eval {run.path}'), or pick another run.")


# ------------------------------------------------------------------------------------ criterion
def _combo_key(controls: Controls, setting: Mapping[str, object]) -> tuple[str, ...]:
    return tuple(str(setting[s.name]) for s in controls.switches)


def candidates(controls: Controls, rng: np.random.Generator) -> list[Setting]:
    """Corners, edge and face centres, random face points and random points of every combination
    (output-gain knobs held at their defaults, as the first design holds them)."""
    held = held_gain_knobs(controls)
    space = audible_space(controls)  # knobs silent beyond a range: candidates within it
    k = len(controls.knobs)
    lattice = np.array(list(itertools.product((0.0, 0.5, 1.0), repeat=k))) if k <= 5 else np.zeros((0, k))
    out: list[Setting] = []
    seen: set[tuple] = set()
    for combo in controls.switch_combinations():
        faces = []
        for knob, end in itertools.product(range(k), (0.0, 1.0)):
            face = rng.uniform(size=(8, k))
            face[:, knob] = end
            faces.append(face)
        units = np.vstack([lattice, *faces, rng.uniform(size=(64 * k, k))])
        for u in units:
            setting = setting_from_units(space, u, combo) | held  # output gains stay at their defaults
            key = tuple(sorted((name, str(v)) for name, v in setting.items()))
            if key not in seen:
                seen.add(key)
                out.append(setting)
    return out


class Surrogate:
    """Predicted log-ESR anywhere: a kernel average of the takes' log-ESRs in ``u`` (see the module)."""

    def __init__(self, controls: Controls, settings: Sequence[Setting], errors: Sequence[float]) -> None:
        self.controls = controls
        self.u = knob_units(controls, settings)
        self.keys = [_combo_key(controls, s) for s in settings]
        self.log_e = np.log(np.maximum(np.asarray(errors, float), _ESR_FLOOR))
        self.mean = float(np.mean(self.log_e))
        gaps = []
        for i, key in enumerate(self.keys):
            same = [j for j, other in enumerate(self.keys) if j != i and other == key]
            if same:
                gaps.append(float(np.min(np.linalg.norm(self.u[same] - self.u[i], axis=1))))
        self.bandwidth = max(0.5 * float(np.median(gaps)) if gaps else 0.15, 0.03)

    def log_esr(self, setting: Mapping[str, object]) -> float:
        u = self.controls.unit_knobs(setting)
        key = _combo_key(self.controls, setting)
        d2 = np.sum((self.u - u) ** 2, axis=1)
        w = np.exp(-d2 / (2 * self.bandwidth ** 2))
        w *= np.array([1.0 if other == key else _OTHER_COMBINATION for other in self.keys])
        return float((np.sum(w * self.log_e) + _PRIOR * self.mean) / (np.sum(w) + _PRIOR))


def pick(controls: Controls, planned: Sequence[Setting], surrogate: Surrogate, pool: Sequence[Setting],
         count: int) -> tuple[list[Setting], list[float]]:
    """Greedily the ``count`` candidates of highest predicted ESR x distance to the planned settings."""
    k = len(controls.knobs)
    pool_u = knob_units(controls, pool)
    error = np.exp([surrogate.log_esr(s) for s in pool])
    pool_keys = [_combo_key(controls, s) for s in pool]
    distance = np.full(len(pool), math.sqrt(k))
    planned_u = knob_units(controls, planned)
    for key in set(pool_keys):
        rows = [i for i, s in enumerate(planned) if _combo_key(controls, s) == key]
        mine = [i for i, other in enumerate(pool_keys) if other == key]
        if rows:
            gaps = np.linalg.norm(pool_u[mine][:, None] - planned_u[rows][None], axis=2)
            distance[mine] = gaps.min(axis=1)
    chosen: list[Setting] = []
    scores: list[float] = []
    for _ in range(count):
        score = error * distance
        best = int(np.argmax(score))
        if not score[best] > 0.0:
            break
        chosen.append(pool[best])
        scores.append(float(score[best]))
        same = np.array([other == pool_keys[best] for other in pool_keys])
        distance[same] = np.minimum(distance[same], np.linalg.norm(pool_u[same] - pool_u[best], axis=1))
    return chosen, scores


def order_from(controls: Controls, start: Setting, settings: Sequence[Setting],
               costs: MoveCosts = DEFAULT_COSTS) -> list[int]:
    """A cheap recording order of ``settings`` starting from the knob state ``start``: nearest neighbour,
    then 2-opt reversals that keep the start in place."""
    cost = cost_matrix(controls, [start, *settings], costs)
    n = len(settings) + 1
    path = [0]
    free = set(range(1, n))
    while free:
        nxt = min(free, key=lambda j: (cost[path[-1], j], j))
        path.append(nxt)
        free.remove(nxt)
    improved = True
    while improved:
        improved = False
        for i in range(1, n - 1):
            for j in range(i + 1, n):
                after = cost[path[j], path[j + 1]] if j + 1 < n else 0.0
                new_after = cost[path[i], path[j + 1]] if j + 1 < n else 0.0
                gain = cost[path[i - 1], path[i]] + after - cost[path[i - 1], path[j]] - new_after
                if gain > 1e-9:
                    path[i:j + 1] = path[i:j + 1][::-1]
                    improved = True
    return [p - 1 for p in path[1:]]


# ------------------------------------------------------------------------------------ plan --more
def plan_more(root: str | Path, count: int, *, seed: int = 0, run: str | None = None,
              costs: MoveCosts = DEFAULT_COSTS) -> Refinement:
    """Append ``count`` settings to ``root``'s plan.csv where the run's model is least trustworthy."""
    root = Path(root)
    if count < 1:
        raise RefineError(f"--more {count}: ask for at least 1 more take.")
    try:
        session = Session.open(root)
        plan = session.plan()
    except SessionError as error:
        raise RefineError(str(error)) from None
    controls = session.controls
    if not controls.knobs:
        raise RefineError(f"{session.plan_path}: the device has no knobs, so there is nothing to refine.")
    MAX_TAKES.check(len(plan) + count, f"--more {count} on {session.plan_path}")
    if run is None:
        chosen_run = newest_run(root)
    else:
        chosen_run = Run.find(root, run)
        if not chosen_run.model_path.is_file():
            raise RefineError(f"--run {run}: {chosen_run.model_path} not found; name a run of "
                              f"{Run.runs_dir(root)} that 'knobcap train' finished.")
    recorded = {row.take for row in session.recorded_takes()}
    errors, source = take_errors(chosen_run, [row.take for row in plan if row.take in recorded])
    if not errors:
        raise RefineError(f"{chosen_run.path}: no recorded take has an error figure; record and train first.")
    by_name = {row.take: row for row in plan}
    names = sorted(errors)
    surrogate = Surrogate(controls, [by_name[n].setting for n in names], [errors[n] for n in names])
    rng = np.random.default_rng(seed)
    planned = [row.setting for row in plan]
    added, scores = pick(controls, planned, surrogate, candidates(controls, rng), count)
    if len(added) < count:
        raise RefineError(f"--more {count}: only {len(added)} new settings differ from the planned ones; "
                          "ask for fewer.")
    order = order_from(controls, plan[-1].setting, added, costs)
    numbers = [int(row.take[4:]) for row in plan]
    # never a name with a recording anywhere in the session (takes/, or the demo's takes-silent/)
    numbers += [int(p.stem[4:]) for p in session.root.glob("takes*/take*.wav") if p.stem[4:].isdigit()]
    first = max(numbers, default=0) + 1
    new_rows = [PlannedTake(take_name(first + i), added[j], "train") for i, j in enumerate(order)]
    text = session.plan_path.read_text(encoding="utf-8")
    tail = plan_csv_text(controls, new_rows).split("\n", 1)[1]
    write_text_atomic(session.plan_path, text + ("" if text.endswith("\n") else "\n") + tail)
    signal = session.input().map
    moves = session_time(controls, [plan[-1].setting, *(r.setting for r in new_rows)],
                         signal.length / signal.sample_rate, costs)
    return Refinement(chosen_run.name, source, new_rows, [scores[j] for j in order],
                      replace(moves, takes=len(new_rows)))
