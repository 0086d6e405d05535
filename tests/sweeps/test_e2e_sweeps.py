"""End to end: real local Ray, real Optuna, real MLflow (sqlite), real DDP workers on CPU.

Each test runs `sweeps/run.py` as a user would, in its own process session and with its own Ray
temp dir, and stops only the processes it started (by pid).
"""
from __future__ import annotations

import csv
import os
import re
import signal
import time

import pytest
import yaml

from tests.sweeps.e2e_helpers import (child_runs, run_cli, short_temp_dir, start_cli,
                                      stop_leftovers, wait_for_line, write_space)
from workloads.registry import get_workload

pytestmark = pytest.mark.e2e
CPUS = os.cpu_count() or 2


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("space,workload", [
    ("entropy_lambda", "saliency"), ("ten_energy", "ten_lm"),
    # a user's own model family, named by module path (the "bring your own model" proof)
    ("examples/custom_space.yaml", "examples.custom_workload")])
def test_smoke_sweep_tracks_parent_and_children(tmp_path, space, workload):
    """2 trials x 2 DDP workers; MLflow has the parent, 2 nested children with every knob as a
    parameter and per-epoch metrics; best_config.yaml and results.csv are written."""
    rc = run_cli(["--space", space, "--smoke", "--workers-per-trial", "2",
                  "--cpus-per-worker", str(CPUS / 2), "--output", str(tmp_path),
                  "--name", "s"], str(tmp_path / "log.txt"))
    log = (tmp_path / "log.txt").read_text()
    assert rc == 0, log
    run_dir = tmp_path / "s"
    assert (run_dir / "best_config.yaml").is_file() and (run_dir / "results.csv").is_file()
    best = yaml.safe_load((run_dir / "best_config.yaml").read_text())
    wl = get_workload(workload)
    assert best["workload"] == workload and set(best["knobs"]) == set(wl.knob_types())
    assert len(read_csv(run_dir / "results.csv")) == 2

    client, parents, children = child_runs(str(run_dir), "s")
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert any(a.path == "space" for a in client.list_artifacts(parent.info.run_id))
    objective = {"saliency": "val_ig", "ten_lm": "val_bpb",
                 "examples.custom_workload": "val_mse"}[workload]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert set(child.data.params) == set(wl.knob_types())  # searched and fixed
        history = client.get_metric_history(child.info.run_id, objective)
        steps = [m.step for m in history]
        assert steps == list(range(1, len(steps) + 1)) and steps, steps  # step = epoch
        # every workload here is built with the kit: its regularized steps per epoch are there
        regularized = client.get_metric_history(child.info.run_id, "probe_steps")
        assert [m.step for m in regularized] == steps
        if workload == "saliency":  # lambda = 0 never regularizes; the searched lambda > 0 does
            fired = sum(m.value for m in regularized)
            assert (fired == 0) == (child.data.tags["baseline"] == "true"), (child.data.tags,
                                                                               fired)
        assert child.info.status in ("FINISHED", "KILLED")
    # the trial that ran every epoch was tracked for all of them
    epochs = int(best["knobs"]["epochs"])
    assert any(len(client.get_metric_history(c.info.run_id, objective)) == epochs
               for c in children)


def test_asha_prunes_bad_trial_and_next_trial_gets_all_cpus(tmp_path):
    """A learning rate of 1e-9 learns nothing: ASHA stops it after epoch 1. The trial after it
    needs every CPU of the cluster, so it starts only if the pruned trial's workers' placement
    group was released (it leaks when Ray runs without its dashboard: README, How it works)."""
    wl = get_workload("ten_lm")
    # ASHA never compares against the baseline (sweeps.search.BaselineExemptASHA): a good
    # search trial (lr 3e-3) sets the cutoff the 1e-9 ones miss; Optuna shuffles the grid by seed
    doc = {"workload": "ten_lm", "method": "grid", "seed": 1,  # seed 1: 3e-3 first
           "metric": {"name": "val_bpb", "goal": "minimize"},
           "parameters": {"lr": {"values": [3.0e-3, 1.0e-9, 2.0e-9]}},
           "baseline": {"lr": 3.0e-3},
           "fixed": {**wl.smoke, "epochs": 2},
           "early_terminate": {"type": "asha", "min_iter": 1, "eta": 2},
           "budget": {"trials": 4, "max_concurrent": 1},
           "resources": {"workers_per_trial": 2, "cpus_per_worker": CPUS / 2}}
    path = write_space(tmp_path / "asha.yaml", doc)
    rc = run_cli(["--space", path, "--output", str(tmp_path), "--name", "a"],
                 str(tmp_path / "log.txt"), timeout=600)
    log = (tmp_path / "log.txt").read_text()
    assert rc == 0, log
    rows = read_csv(tmp_path / "a" / "results.csv")
    outcomes = {r["trial_id"]: r["outcome"] for r in rows}
    baseline = [r for r in rows if r["baseline"] == "True"]
    assert baseline and baseline[0]["outcome"] == "finished", rows
    pruned = [r for r in rows if r["outcome"] == "pruned"]
    assert pruned and all(int(r["epochs"]) == 1 for r in pruned), rows
    assert len(rows) == 4, rows
    # Order of events: the last trial started after a pruned one ended, and reported.
    lines = log.splitlines()
    first_pruned = min(i for i, l in enumerate(lines) if "] pruned " in l)
    later_starts = re.findall(r"\] start\s+(\w+):", "\n".join(lines[first_pruned:]))
    assert later_starts, log
    assert any(f"epoch 1 {t}:" in log for t in later_starts), log
    _, _, children = child_runs(str(tmp_path / "a"), "a")
    tags = {c.data.tags["trial_id"]: c for c in children}
    for trial_id, outcome in outcomes.items():
        if outcome == "pruned":
            assert tags[trial_id].info.status == "KILLED"
            assert tags[trial_id].data.tags["pruned"] == "true"


def test_killed_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    wl = get_workload("ten_lm")
    doc = {"workload": "ten_lm", "method": "tpe", "seed": 0,
           "metric": {"name": "val_bpb", "goal": "minimize"},
           "parameters": {"energy_reg_weight": {"distribution": "log_uniform_values",
                                                "min": 0.0001, "max": 0.1}},
           "fixed": {**wl.smoke, "epochs": 2},
           "budget": {"trials": 3, "max_concurrent": 1},
           "resources": {"workers_per_trial": 1, "cpus_per_worker": 1}}
    path = write_space(tmp_path / "resume.yaml", doc)
    args = ["--space", path, "--output", str(tmp_path), "--name", "r"]
    ray_dir = short_temp_dir()
    log1 = str(tmp_path / "log1.txt")
    proc = start_cli(args, log1, ray_dir)
    try:
        wait_for_line(log1, "] finished ", timeout=300, proc=proc)
        time.sleep(2)  # let Tune write its experiment state after the trial ended
        os.kill(proc.pid, signal.SIGKILL)  # the driver process, with no chance to clean up
        proc.wait(timeout=30)
    finally:
        stop_leftovers(ray_dir, sid=proc.pid)
    first_done = re.findall(r"\] finished (\w+)", open(log1).read())
    assert first_done, open(log1).read()

    rc = run_cli(["--resume", "--output", str(tmp_path), "--name", "r"],
                 str(tmp_path / "log2.txt"), timeout=600)
    log2 = (tmp_path / "log2.txt").read_text()
    assert rc == 0, log2
    rows = read_csv(tmp_path / "r" / "results.csv")
    assert len(rows) == 3, rows
    for trial_id in first_done:
        assert not re.search(rf"\] start\s+{trial_id}:", log2), "a finished trial was re-run"
        assert trial_id in {r["trial_id"] for r in rows}
    client, parents, children = child_runs(str(tmp_path / "r"), "r")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(c.data.tags["trial_id"] for c in children) == sorted(r["trial_id"] for r in rows)
    for c in children:
        if c.data.tags["trial_id"] in first_done:
            steps = [m.step for m in client.get_metric_history(c.info.run_id, "val_bpb")]
            assert steps == [1, 2], steps  # logged once, not again after the resume
