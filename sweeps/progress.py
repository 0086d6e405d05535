"""Concise live progress on the terminal (Tune's own tables are turned off)."""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Optional, TextIO

from ray import tune

from sweeps.report import trial_outcome
from sweeps.keys import BASELINE_TAG, CONFIRM_OF, EPOCH
from workloads.contract import SEED_KNOB
from sweeps.space import Space
from workloads.knobs import format_knob


class ProgressPrinter(tune.Callback):
    """One line per event: trial started, epoch reported, trial ended; with the tallies
    (done / running / pruned / failed) and the best objective so far."""

    def __init__(self, space: Space, stream: Optional[TextIO] = None,
                 started: Optional[float] = None):
        self.space = space
        self.stream = stream
        self.started = time.time() if started is None else started  # the sweep's clock
        self.confirming = False  # confirm runs are no candidates: no "best" for them
        self.running: set[str] = set()
        self.counts = {"finished": 0, "pruned": 0, "diverged": 0, "error": 0}
        self.last: dict[str, dict] = {}
        self.best: Optional[tuple[float, str]] = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["stream"] = None  # sys.stdout does not pickle; Tune saves callbacks
        return state

    # Tune restores a callback's state from these on --resume: the tallies go on from there.
    def get_state(self) -> dict:
        return {"counts": dict(self.counts), "best": self.best, "last": dict(self.last),
                "running": sorted(self.running), "confirming": self.confirming}

    def set_state(self, state: dict) -> None:
        self.counts.update(state.get("counts", {}))
        best = state.get("best")
        self.best = None if best is None else (float(best[0]), str(best[1]))
        self.last = dict(state.get("last", {}))
        self.running = set(state.get("running", []))
        self.confirming = bool(state.get("confirming", False))

    def say(self, text: str) -> None:
        stream = self.stream or sys.stdout
        print(f"[{time.time() - self.started:6.0f}s] {text}", file=stream, flush=True)

    def describe(self, trial) -> str:
        if trial.config.get(CONFIRM_OF) is not None:
            data = self.space.get_workload().data_seed_knob
            fresh = f", {data}={trial.config.get(data)}" if data in trial.config else ""
            return (f"confirm {trial.config[CONFIRM_OF]} with "
                    f"{SEED_KNOB}={trial.config.get(SEED_KNOB)}{fresh}")
        if trial.config.get(BASELINE_TAG):
            return "baseline " + " ".join(f"{k}={format_knob(v)}"
                                          for k, v in (self.space.baseline or {}).items())
        return " ".join(f"{k}={_short(v)}" for k, v in trial.config.items() if k != BASELINE_TAG)

    def tallies(self) -> str:
        o = self.space.primary
        best = "—" if self.best is None else f"{self.best[0]:.4g} ({self.best[1]})"
        failed = self.counts["diverged"] + self.counts["error"]
        if self.confirming:  # "pruned" here: cut short by the stage's time limit
            short = self.counts["pruned"]
            return (f"confirm runs done {self.counts['finished']} · running "
                    f"{len(self.running)} · failed {failed}"
                    + (f" · stopped early {short}" if short else ""))
        return (f"done {self.counts['finished']} · running {len(self.running)} · "
                f"pruned {self.counts['pruned']} · failed {failed} · best {o.name} {best}")

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        # A trial started beyond the limit is a confirm run started ahead (tuner.py): say so,
        # or the terminal shows more trials than may train at once.
        ahead = len(self.running) >= self.space.budget.max_concurrent
        self.confirming = self.confirming or trial.config.get(CONFIRM_OF) is not None
        self.running.add(trial.trial_id)
        self.say(f"start  {trial.trial_id}: {self.describe(trial)}"
                 + (" (ready; trains when a running trial ends)" if ahead else ""))

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self.last[trial.trial_id] = result
        o = self.space.primary
        value = result.get(o.name, math.nan)
        self.say(f"epoch {int(result.get(EPOCH, 0))} {trial.trial_id}: {o.name}={value:.4g}")

    def _ended(self, trial, outcome: str) -> None:
        # Like the final table: a trial counts with its last reported value.
        o = self.space.primary
        value = self.last.get(trial.trial_id, {}).get(o.name, math.nan)
        confirming = trial.config.get(CONFIRM_OF) is not None  # not a search candidate
        if (outcome != "error" and not confirming and isinstance(value, (int, float))
                and math.isfinite(value)):
            if self.best is None or (value > self.best[0] if o.goal == "maximize"
                                     else value < self.best[0]):
                self.best = (float(value), trial.trial_id)
        self.running.discard(trial.trial_id)
        self.counts[outcome] += 1
        self.say(f"{outcome:<6} {trial.trial_id} | {self.tallies()}")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended(trial, trial_outcome(self.last.get(trial.trial_id, {}), self.space.epochs()))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended(trial, "error")


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
