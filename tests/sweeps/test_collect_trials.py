"""A trial's epoch history survives --resume (no Ray cluster: Tune's own Result objects).

Tune starts a restored trial's result.json afresh (tests/sweeps/test_e2e_faults.py shows it on
a real sweep), so its dataframe holds only the epochs reported after the resume; the sweep's
MLflow spool holds every epoch. The report's rung agreement and learning curves read the
history, so a resumed trial must not lose its early epochs there."""
from __future__ import annotations

import math

import pandas as pd
from ray.tune import Result

from sweeps.mlflow_spool import Spool
from sweeps.report import rung_agreement
from sweeps.space import load_space
from sweeps.sweep import collect_trials

SPACE = load_space("search_spaces/entropy_lambda.yaml")  # 8 epochs, ASHA's rung at epoch 3


def val_ig(trial: int, epoch: int) -> float:
    """Trial k's curve: its rank at epoch 3 is its final rank (τ = 1)."""
    return 1.0 + 0.1 * trial + 0.01 * epoch


def resumed_result(trial: int, resumed_after: int) -> Result:
    """What Tune returns for a trial restored after `resumed_after` epochs: the last report,
    and a dataframe of the epochs reported since."""
    rows = [{"epoch": float(e), "val_ig": val_ig(trial, e), "trial_id": f"t{trial}"}
            for e in range(resumed_after + 1, SPACE.epochs() + 1)]
    return Result(metrics={**rows[-1], "config": {"lambda": 0.1 * (trial + 1)}},
                  checkpoint=None, error=None, path=f"/nonexistent/t{trial}",
                  metrics_dataframe=pd.DataFrame(rows))


def spool_with_every_epoch(tmp_path, trials: range) -> Spool:
    """The tracker appends each reported epoch's metrics (an epoch reported twice, as a trial
    restarted from its checkpoint recomputes it, appears twice)."""
    spool = Spool(str(tmp_path))
    # a finished sweep's parent run metrics (a resumed sweep's spool may hold them)
    spool.append({"op": "metrics", "run_id": "parent", "step": 0, "ts": 0,
                  "metrics": {"best_val_ig": 1.0}})
    for t in trials:
        for e in [1, 2, 3, 4, 4, 5]:
            spool.append({"op": "metrics", "key": f"t{t}", "step": e, "ts": 0,
                          "metrics": {"val_ig": val_ig(t, e), "diverged": 0.0}})
    return spool


def test_history_of_a_resumed_trial_keeps_the_epochs_before_the_resume(tmp_path):
    spool = spool_with_every_epoch(tmp_path, range(1))
    grid = [resumed_result(0, resumed_after=4)]
    (trial,) = collect_trials(grid, SPACE, spool.reported_metrics())
    epochs = [h["epoch"] for h in trial["history"]]
    assert epochs == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]  # once each, in order
    assert all(h["val_ig"] == val_ig(0, int(h["epoch"])) for h in trial["history"])
    assert all(set(h) == {"epoch", "val_ig"} for h in trial["history"])  # only workload metrics
    # without the spool only what Tune still has
    (alone,) = collect_trials(grid, SPACE)
    assert [h["epoch"] for h in alone["history"]] == [5.0, 6.0, 7.0, 8.0]


def test_epochs_a_restored_trial_never_reached_again_are_dropped():
    from sweeps.sweep import merged_history
    earlier = {e: {"val_ig": float(e)} for e in range(1, 6)}  # reported before the kill
    rows = [{"epoch": 4.0, "val_ig": float("nan")}]             # restored at 3, diverged at 4
    assert [h["epoch"] for h in merged_history(earlier, rows, ["epoch", "val_ig"])] == [
        1.0, 2.0, 3.0, 4.0]


def test_tunes_report_of_an_epoch_wins_over_the_spool(tmp_path):
    spool = Spool(str(tmp_path))
    spool.append({"op": "metrics", "key": "t0", "step": 5, "ts": 0, "metrics": {"val_ig": -1.0}})
    (trial,) = collect_trials([resumed_result(0, resumed_after=4)], SPACE,
                              spool.reported_metrics())
    assert trial["history"][0] == {"epoch": 5.0, "val_ig": val_ig(0, 5)}


def test_rung_agreement_counts_resumed_trials(tmp_path):
    spool = spool_with_every_epoch(tmp_path, range(4))
    grid = [resumed_result(t, resumed_after=4) for t in range(4)]
    (rung,) = rung_agreement(SPACE, collect_trials(grid, SPACE, spool.reported_metrics()))
    assert rung["rung"] == 3 and rung["n"] == 4 and rung["tau"] == 1.0
    # what the report computed before: the rung's epoch was lost with the resume
    (lost,) = rung_agreement(SPACE, collect_trials(grid, SPACE))
    assert lost["n"] == 0 and math.isnan(lost["tau"])
