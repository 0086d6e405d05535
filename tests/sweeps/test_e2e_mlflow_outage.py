"""End to end: an MLflow server (real, on 127.0.0.1, started and stopped by pid here) that goes
down during a sweep. The sweep never waits for it: (a) a 30-s outage → every epoch of every
trial reaches MLflow exactly once and every run ends terminated; (b) a server that never comes
back → the sweep still exits 0 with its results and a spool, and `--sync-mlflow` completes
MLflow later, with no duplicates even when run twice."""
from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from tests.sweeps.e2e_helpers import (REPO, RUN, short_temp_dir, start_cli, stop_leftovers,
                                      wait_for_line, write_space)
from workloads.registry import get_workload

pytestmark = pytest.mark.e2e
CPUS = os.cpu_count() or 2
EPOCHS = 3


class MlflowServer:
    """`mlflow server` in its own session; stopped by killing that process group."""

    def __init__(self, root):
        self.root = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 90) -> None:
        log = open(os.path.join(self.root, "server.log"), "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", "sqlite:///" + os.path.join(self.root, "server.db"),
             "--artifacts-destination", os.path.join(self.root, "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError("mlflow server did not start:\n"
                             + open(os.path.join(self.root, "server.log")).read()[-3000:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "mlflow"
    root.mkdir()
    srv = MlflowServer(str(root))
    srv.start()
    yield srv
    srv.kill()


def space(tmp_path, trials: int) -> str:
    wl = get_workload("examples.custom_workload")
    return write_space(tmp_path / "outage.yaml", {
        "workload": "examples.custom_workload", "method": "random", "seed": 0,
        "metric": {"name": "val_mse", "goal": "minimize"},
        "parameters": {"weight_decay": {"values": [0.01]}},
        "baseline": {"weight_decay": 0.0},
        "fixed": {**wl.smoke, "epochs": EPOCHS},
        "budget": {"trials": trials, "max_concurrent": 1},
        "resources": {"workers_per_trial": 2, "cpus_per_worker": CPUS / 2}})


def run_sweep(tmp_path, server: MlflowServer, trials: int, on_first_epoch) -> tuple[int, str]:
    """Run the CLI; call on_first_epoch() once the first trial reported epoch 1."""
    ray_dir = short_temp_dir()
    log = str(tmp_path / "sweep.txt")
    proc = start_cli(["--space", space(tmp_path, trials), "--output", str(tmp_path),
                      "--name", "o", "--mlflow-uri", server.uri], log, ray_dir)
    try:
        wait_for_line(log, "epoch 1 ", timeout=300, proc=proc)
        on_first_epoch()
        rc = proc.wait(timeout=600)
    finally:
        stop_leftovers(ray_dir, sid=proc.pid)
    return rc, open(log).read()


def assert_mlflow_complete(uri: str, run_dir: str) -> None:
    """Every epoch of every trial exactly once (as results.csv counts them), all runs ended."""
    with open(os.path.join(run_dir, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("o")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["trial_id"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(children) == sorted(r["trial_id"] for r in rows)
    for row in rows:
        run = children[row["trial_id"]]
        assert run.info.status in ("FINISHED", "KILLED", "FAILED"), run.info.status
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_mse")]
        assert steps == list(range(1, int(row["epochs"]) + 1)), (row["trial_id"], steps)
    assert "best_val_mse" in parents[0].data.metrics


def test_a_30_second_outage_loses_nothing_and_stalls_nothing(tmp_path, server):
    def outage():
        server.kill()
        time.sleep(30)
        server.start()

    # three trials: the sweep outlasts the outage (the first trial reports epoch 1 at ~30 s)
    rc, log = run_sweep(tmp_path, server, trials=3, on_first_epoch=outage)
    assert rc == 0, log
    assert "MLflow not answering" in log and "MLflow answering again" in log
    assert "wait in" not in log.split("MLflow answering again")[-1], log  # spool drained
    assert_mlflow_complete(server.uri, str(tmp_path / "o"))


def test_a_server_that_never_returns_leaves_a_spool_that_sync_mlflow_sends(tmp_path, server):
    rc, log = run_sweep(tmp_path, server, trials=1, on_first_epoch=server.kill)
    assert rc == 0, log
    assert (tmp_path / "o" / "results.csv").is_file()
    waiting = [line for line in log.splitlines() if "wait in" in line and "--sync-mlflow" in line]
    assert len(waiting) == 1, log

    sync = [sys.executable, RUN, "--sync-mlflow", "--name", "o", "--output", str(tmp_path)]
    down = subprocess.run(sync, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert down.returncode == 1 and "still waiting" in down.stderr, down.stderr

    server.start()
    for attempt in range(2):  # the second run finds nothing to send and duplicates nothing
        done = subprocess.run(sync, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert ("sent 0 " in done.stdout) == (attempt == 1), done.stdout
        assert_mlflow_complete(server.uri, str(tmp_path / "o"))
