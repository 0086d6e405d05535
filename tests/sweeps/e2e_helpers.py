"""Helpers for the sweep end-to-end tests: run the CLI in its own session, clean up by pid."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import yaml
from mlflow.tracking import MlflowClient

from sweeps import local_ray

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(REPO, "sweeps", "run.py")


def short_temp_dir() -> str:
    """Ray's socket paths must stay under ~107 characters: pytest's tmp_path is too deep."""
    return tempfile.mkdtemp(prefix="rt", dir="/tmp")


def pids_using(marker: str) -> list[int]:
    """Processes whose command line names `marker` (our own Ray temp dir) or that hold a file
    open under it (Ray's renamed agents): ours to stop."""
    return local_ray.pids_of(marker)


def stop_leftovers(ray_dir: str, sid: int | None = None) -> None:
    """SIGKILL what the test started: its driver's session and anything using its Ray dir."""
    local_ray.stop_started(ray_dir, sid)
    shutil.rmtree(ray_dir, ignore_errors=True)


def start_cli(args: list[str], log_path: str, ray_dir: str) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, RUN, *args, "--ray-temp-dir", ray_dir],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            start_new_session=True)


def run_cli(args: list[str], log_path: str, timeout: float = 600) -> int:
    """Run the CLI to the end on a private local Ray; always clean up what it started."""
    ray_dir = short_temp_dir()
    proc = start_cli(args, log_path, ray_dir)
    try:
        return proc.wait(timeout=timeout)
    finally:
        stop_leftovers(ray_dir, sid=proc.pid)


def write_space(path, doc: dict) -> str:
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return str(path)


def child_runs(run_dir: str, experiment: str):
    client = MlflowClient("sqlite:///" + os.path.join(run_dir, "mlflow.db"))
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def wait_until(check, what: str, proc: subprocess.Popen, log: str, timeout: float,
               every: float = 1.0):
    """Poll check() every `every` s until it returns something truthy (returned); fail with the
    log's tail if `proc` ends first or `timeout` passes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"process ended before {what}:\n" + open(log).read()[-3000:])
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s: {what}:\n" + open(log).read()[-3000:])


def wait_for_line(path: str, needle: str, timeout: float, proc: subprocess.Popen) -> None:
    wait_until(lambda: needle in open(path).read(), f"printing {needle!r}", proc, path, timeout)
