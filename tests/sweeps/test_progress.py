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
