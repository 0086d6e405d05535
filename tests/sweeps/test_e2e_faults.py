"""End to end, on a real local Ray: a trial survives what breaks in real sweeps (issue 13 c-e).

One single-trial sweep of the example workload (2 DDP workers, 6 epochs) goes through three
faults in a row, each asserted where it happens:

  (c) a RayTrainWorker is SIGKILLed after epoch 1 was checkpointed → Ray Train restarts the
      worker group and the trial goes on from its checkpoint (no epoch 1 again);
  (d) the driver is SIGKILLed mid-trial and the latest checkpoint's model.pt truncated →
      `--resume` continues from the previous checkpoint, every report of that run carrying
      checkpoint_fallbacks = 1;
  (e) the driver is SIGKILLed the moment the final checkpoint is registered (Ray Train's
      checkpoint_manager_snapshot.json names it; Tune cannot have ended the trial yet: that
      needs the worker group to shut down first) → `--resume` restores the finished checkpoint,
      reports its saved final metrics again, and the sweep exits 0 with the trial finished.

The test stops only what it started: the CLI runs in its own session, and the worker it kills
is a descendant of that CLI process.
"""
from __future__ import annotations

import csv
import glob
import json
import os
import re
import signal

import pytest

from sweeps import local_ray
from sweeps.mlflow_spool import Spool
from sweeps.space import load_space
from sweeps.sweep import collect_trials
from tests.sweeps.e2e_helpers import (child_runs, short_temp_dir, start_cli, stop_leftovers,
                                      wait_until, write_space)
from workloads.kit.loop import CHECKPOINT_FALLBACKS, CHECKPOINT_MODEL
from workloads.registry import get_workload

pytestmark = pytest.mark.e2e
CPUS = os.cpu_count() or 2
EPOCHS = 6
SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train V2's registered checkpoints


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        fields = local_ray.proc_stat(entry) if entry.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _train_workers(cli_pid: int) -> list[int]:
    pids = []
    for pid in _descendants(cli_pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"RayTrainWorker" in f.read():
                    pids.append(pid)
        except OSError:
            continue
    return pids


def _snapshot(run_dir) -> dict | None:
    """Ray Train's checkpoint manager state of the sweep's only trial (None before the first)."""
    paths = glob.glob(os.path.join(run_dir, "train", "*", SNAPSHOT))
    if not paths:
        return None
    try:
        with open(paths[0]) as f:
            snap = json.load(f)
    except (OSError, ValueError):  # being rewritten
        return None
    snap["run_path"] = os.path.dirname(paths[0])
    return snap


def _latest_epoch(snap: dict | None) -> int:
    latest = (snap or {}).get("latest_checkpoint_result")
    return int(latest["metrics"]["epoch"]) if latest else 0


def _wait_for_checkpoint(run_dir, epoch: int, proc, log: str, timeout: float) -> dict:
    """Poll (every 0.1 s) until the registered latest checkpoint has `epoch` epochs or more."""
    def reached():
        snap = _snapshot(run_dir)
        return snap if _latest_epoch(snap) >= epoch else None
    return wait_until(reached, f"epoch {epoch} was checkpointed", proc, log, timeout, every=0.1)


def _worker_logs(ray_dir: str) -> str:
    text = []
    for path in glob.glob(os.path.join(ray_dir, "session_*", "logs", "worker-*")):
        with open(path, errors="replace") as f:
            text.append(f.read())
    return "\n".join(text)


def _kill_driver(proc, ray_dir: str) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    stop_leftovers(ray_dir, sid=proc.pid)  # at once: no worker writes after the driver died
    proc.wait(timeout=30)


def _tune_results(run_dir) -> list[dict]:
    """The trial's results Tune wrote in this run of the sweep (a restored trial starts its
    result.json afresh); a line being written is left out."""
    paths = glob.glob(os.path.join(run_dir, "tune", "*", "result.json"))
    assert len(paths) <= 1, paths
    results = []
    for line in open(paths[0]).read().splitlines() if paths else []:
        try:
            results.append(json.loads(line))
        except ValueError:
            pass
    return results


def _wait_for_tune_epoch(run_dir, epoch: int, proc, log: str, timeout: float) -> list[dict]:
    def reached():
        results = _tune_results(run_dir)
        return results if any(r.get("epoch", 0) >= epoch for r in results) else None
    return wait_until(reached, f"Tune got epoch {epoch}", proc, log, timeout, every=0.2)


def test_worker_kill_corrupt_checkpoint_and_unrecorded_finish(tmp_path):
    wl = get_workload("examples.custom_workload")
    doc = {"workload": "examples.custom_workload", "method": "random", "seed": 0,
           "metric": {"name": "val_mse", "goal": "minimize"},
           "parameters": {"weight_decay": {"values": [0.01]}},
           # epochs of ~1 s (16k examples): Train now reports within 0.2 s, and a smoke-size
           # epoch of milliseconds would end the trial before the test can strike mid-way
           "fixed": {**wl.smoke, "epochs": EPOCHS, "dropout": 0.1, "n_train": 16384},
           "budget": {"trials": 1, "max_concurrent": 1},
           "resources": {"workers_per_trial": 2, "cpus_per_worker": CPUS / 2}}
    space = write_space(tmp_path / "faults.yaml", doc)
    run_dir = str(tmp_path / "f")
    resume = ["--resume", "--output", str(tmp_path), "--name", "f"]

    # -- run 1: (c) kill one DDP worker after epoch 1, then (d) kill the driver mid-trial -------
    ray_dir, log1 = short_temp_dir(), str(tmp_path / "log1.txt")
    proc = start_cli(["--space", space, "--output", str(tmp_path), "--name", "f"], log1, ray_dir)
    try:
        _wait_for_checkpoint(run_dir, 1, proc, log1, timeout=240)
        workers = _train_workers(proc.pid)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        # the new worker group resumes from a checkpoint and reports two more epochs
        results = _wait_for_tune_epoch(run_dir, 3, proc, log1, timeout=240)
        assert workers[0] not in _train_workers(proc.pid)
        _kill_driver(proc, ray_dir)
    finally:
        stop_leftovers(ray_dir, sid=proc.pid)
    # (c): resumed from a checkpoint, so epoch 1 did not run again (the worker died within
    # 0.1 s of epoch 1's checkpoint, long before epoch 2 could be reported)
    # the raylet's explanation of the dead worker went to the sweep log; the terminal got a line
    terminal = open(log1).read()
    assert "Lease ID" not in terminal and terminal.count("(details in sweep.log)") == 1, terminal
    assert "raylet: A worker died" in open(os.path.join(run_dir, "sweep.log")).read()
    epochs = [r["epoch"] for r in results]
    assert epochs[0] == 1.0 and all(a < b for a, b in zip(epochs, epochs[1:])), epochs
    snap = _snapshot(run_dir)
    kept = [r["checkpoint_dir_name"] for r in snap["checkpoint_results"]]
    latest = snap["latest_checkpoint_result"]["checkpoint_dir_name"]
    assert len(kept) == 2 and kept[-1] == latest, kept
    latest_epoch = _latest_epoch(snap)
    previous_epoch = int(snap["checkpoint_results"][0]["metrics"]["epoch"])
    assert 3 <= latest_epoch < EPOCHS and previous_epoch == latest_epoch - 1

    # (d): the latest checkpoint's weights are truncated while nothing runs
    model = os.path.join(snap["run_path"], latest, CHECKPOINT_MODEL)
    with open(model, "r+b") as f:
        f.truncate(os.path.getsize(model) // 2)

    # -- run 2: resume → falls back to the previous checkpoint; (e) kill at the final one ------
    ray_dir, log2 = short_temp_dir(), str(tmp_path / "log2.txt")
    proc = start_cli(resume, log2, ray_dir)
    try:
        _wait_for_checkpoint(run_dir, EPOCHS, proc, log2, timeout=240)
        _kill_driver(proc, ray_dir)
    finally:
        stop_leftovers(ray_dir, sid=proc.pid)
    # Tune's result.json of a SIGKILLed driver may lack its last lines: read what is durable —
    # the checkpoints Ray Train registered and the terminal log (flushed per line)
    kept = [r["metrics"] for r in _snapshot(run_dir)["checkpoint_results"]]
    assert [m["epoch"] for m in kept] == [EPOCHS - 1, EPOCHS], kept
    assert all(m.get(CHECKPOINT_FALLBACKS) == 1.0 for m in kept), kept
    # the first report after the fallback is the epoch after the previous checkpoint's
    first = re.search(r"\] epoch (\d+) ", open(log2).read())
    assert first and int(first.group(1)) == previous_epoch + 1, open(log2).read()[-2000:]

    # -- run 3: resume → the finished checkpoint reports its saved metrics; exit 0 ------------
    ray_dir, log3 = short_temp_dir(), str(tmp_path / "log3.txt")
    proc = start_cli(resume, log3, ray_dir)
    try:
        rc = proc.wait(timeout=300)
        worker_logs = _worker_logs(ray_dir)
    finally:
        stop_leftovers(ray_dir, sid=proc.pid)
    assert rc == 0, open(log3).read()[-3000:]
    assert "reporting its saved metrics again" in worker_logs, "(e) was not exercised"
    assert "did not include the specified metric" not in open(log3).read()
    with open(os.path.join(run_dir, "results.csv")) as f:
        (row,) = list(csv.DictReader(f))
    assert row["outcome"] == "finished", row
    # one report, the saved one of the final epoch (it came through run 2's fallback)
    results = _tune_results(run_dir)
    assert [(r["epoch"], r[CHECKPOINT_FALLBACKS]) for r in results] == [(EPOCHS, 1.0)], results
    # MLflow: every epoch once (recomputed and re-reported epochs included), the fallback tagged
    client, _, (child,) = child_runs(run_dir, "f")
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_mse")]
    assert steps == list(range(1, EPOCHS + 1)), steps
    assert "corrupt checkpoint" in child.data.tags.get("checkpoint_fallback", "")
    assert child.info.status == "FINISHED"
    # the report's history (rung agreement, learning curves): every epoch, although Tune's
    # result.json of the restored trial holds only the last (above)
    from ray.tune import ExperimentAnalysis
    from ray.tune.result_grid import ResultGrid
    grid = ResultGrid(ExperimentAnalysis(os.path.join(run_dir, "tune")))
    (trial,) = collect_trials(grid, load_space(os.path.join(run_dir, "space.yaml")),
                              Spool(run_dir).reported_metrics())
    assert [h["epoch"] for h in trial["history"]] == list(range(1, EPOCHS + 1)), trial
