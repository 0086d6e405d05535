"""The terminal's progress lines (no Ray: Tune calls these hooks with its Trial objects)."""
from __future__ import annotations

import io
from types import SimpleNamespace

from sweeps.keys import CONFIRM_OF
from sweeps.progress import ProgressPrinter
from sweeps.space import load_space


def confirm_run(tid: str, seed: int):
    return SimpleNamespace(trial_id=tid, config={CONFIRM_OF: "baseline", "seed": seed,
                                                 "data_seed": seed})


def test_a_confirm_run_started_ahead_says_it_waits():
    space = load_space("entropy_lambda.yaml")  # max_concurrent 1
    out = io.StringIO()
    p = ProgressPrinter(space, stream=out)
    p.on_trial_start(0, [], confirm_run("c1", 1))
    p.on_trial_start(0, [], confirm_run("c2", 2))  # one ahead of the limit
    first, second = out.getvalue().splitlines()
    assert first.endswith("start  c1: confirm baseline with seed=1, data_seed=1")
    assert second.endswith("start  c2: confirm baseline with seed=2, data_seed=2 "
                           "(ready; trains when a running trial ends)")
    p.on_trial_error(0, [], confirm_run("c1", 1))
    p.on_trial_start(0, [], confirm_run("c3", 3))  # c2 trains now, c3 is ahead again
    assert out.getvalue().splitlines()[-1].endswith("(ready; trains when a running trial ends)")


def test_confirm_runs_are_tallied_without_a_best_and_on_the_sweep_clock():
    space = load_space("entropy_lambda.yaml")
    out = io.StringIO()
    p = ProgressPrinter(space, stream=out, started=0.0)  # the sweep began long ago
    p.on_trial_start(0, [], confirm_run("c1", 1))
    p.last["c1"] = {"epoch": 8, "val_ig": 1.3}
    p.on_trial_complete(0, [], confirm_run("c1", 1))
    line = out.getvalue().splitlines()[-1]
    assert "finished c1 | confirm runs done 1 · running 0 · failed 0" in line
    assert "best" not in line
    assert float(line[1:line.index("s]")]) > 1e6  # seconds since `started`, not since now
    # a run the stage's time limit cut short is counted, and a resumed printer still knows
    # it is confirming
    p.on_trial_start(0, [], confirm_run("c2", 2))
    p.last["c2"] = {"epoch": 3, "val_ig": 1.0}
    p.on_trial_complete(0, [], confirm_run("c2", 2))
    assert out.getvalue().splitlines()[-1].endswith("failed 0 · stopped early 1")
    again = ProgressPrinter(space, stream=out)
    again.set_state(p.get_state())
    assert "confirm runs done 1" in again.tallies()
