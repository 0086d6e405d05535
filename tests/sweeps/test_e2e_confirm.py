"""End to end: a sweep with a confirmation stage on a real local Ray, killed during the
confirmation and resumed — report, plots, tagged confirm runs, the parent's verdict tag, and no
run twice."""
from __future__ import annotations

import os
import re
import signal
import time

import pytest

from tests.sweeps.e2e_helpers import (child_runs, pids_using, run_cli, short_temp_dir,
                                      start_cli, stop_leftovers, wait_for_line, write_space)
from workloads.registry import get_workload

pytestmark = pytest.mark.e2e
CPUS = os.cpu_count() or 2


def test_confirm_stage_survives_a_kill_and_ends_in_a_verdict(tmp_path):
    wl = get_workload("examples.custom_workload")
    doc = {"workload": "examples.custom_workload", "method": "random", "seed": 0,
           "metric": {"name": "val_mse", "goal": "minimize"},
           "parameters": {"weight_decay": {"values": [0.001, 0.01]}},
           "baseline": {"weight_decay": 0.0},
           "fixed": {**wl.smoke, "epochs": 2},
           "confirm": {"finalists": 1, "seeds": 2},
           "decision": {"confidence": 0.9, "criteria": [
               {"metric": "val_mse", "not_worse_than": 0.5, "relative": True}]},
           "budget": {"trials": 2, "max_concurrent": 1},
           "resources": {"workers_per_trial": 2, "cpus_per_worker": CPUS / 2}}
    path = write_space(tmp_path / "confirm.yaml", doc)
    ray_dir = short_temp_dir()
    log1 = str(tmp_path / "log1.txt")
    proc = start_cli(["--space", path, "--output", str(tmp_path), "--name", "c"], log1, ray_dir)
    try:  # kill the driver once the first confirmation run has finished
        wait_for_line(log1, "with seed=2", timeout=400, proc=proc)
        time.sleep(2)  # let Tune save the confirm experiment's state
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(5)  # Ray's own processes wind down; its agents do not
        orphans = pids_using(ray_dir)
        assert orphans, "Ray left nothing behind: this part of the test checks nothing now"
        assert (tmp_path / ".local_ray.json").is_file()

        rc = run_cli(["--resume", "--output", str(tmp_path), "--name", "c"],
                     str(tmp_path / "log2.txt"), timeout=600)
        # the resumed sweep stopped what the killed one's Ray left behind (by pid)
        assert not set(orphans) & set(pids_using(ray_dir)), orphans
        assert not (tmp_path / ".local_ray.json").exists()
    finally:
        stop_leftovers(ray_dir, sid=proc.pid)
    assert "confirm: 1 finalist(s)" in open(log1).read()
    log2 = (tmp_path / "log2.txt").read_text()
    assert rc == 0, log2
    assert not re.search(r"start\s+\w+: weight_decay=", log2), "the search was re-run"
    assert "VERDICT: " in log2
    run_dir = tmp_path / "c"
    for name in ("report.md", "verdict.json", "results.csv", "dose_response_weight_decay.png",
                 "learning_curves.png", "optimization_history.png"):
        assert (run_dir / name).is_file(), name
    report = (run_dir / "report.md").read_text()
    assert "## Verdict (confirmation runs, paired by seed)" in report

    client, parents, children = child_runs(str(run_dir), "c")
    (parent,) = parents
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["verdict"] in ("GO", "NO-GO", "INCONCLUSIVE")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/learning_curves.png" in artifacts
    search = [c for c in children if c.data.tags["stage"] == "search"]
    confirm = [c for c in children if c.data.tags["stage"] == "confirm"]
    assert len(search) == 2 and len(confirm) == 4, [c.data.tags for c in children]
    pairs = sorted((c.data.tags["confirm_of"], c.data.tags["seed"]) for c in confirm)
    finalist = next(of for of, _ in pairs if of != "baseline")
    assert pairs == sorted([("baseline", "1"), ("baseline", "2"), (finalist, "1"),
                            (finalist, "2")])  # every run once, none twice
    for c in confirm:
        assert c.info.status == "FINISHED"
        assert c.data.params["seed"] == c.data.tags["seed"]
        # fresh data with each seed (search: data_seed 0, seed 0)
        assert c.data.params["data_seed"] == c.data.tags["data_seed"] == c.data.tags["seed"]
        steps = [m.step for m in client.get_metric_history(c.info.run_id, "val_mse")]
        assert steps == [1, 2], steps
