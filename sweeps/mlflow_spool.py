"""MLflow writes that cannot stop a sweep: a durable spool in the sweep directory, replayed in
order by one background writer.

Every MLflow write of a running sweep (child runs, their metrics, tags, artifacts and statuses;
the parent run's final results) is first appended to `<run_dir>/mlflow_spool/ops.jsonl`
(flushed and fsync'd: a few milliseconds, no network) and only then sent to MLflow by a
`SpoolWriter` thread. A Tune callback therefore never waits for the server. When the server
does not answer, the writer keeps the operations and retries with backoff; what is still
waiting when the sweep ends is replayed on `--resume` or by `sweeps/run.py --sync-mlflow`.

Replay is idempotent, so an operation applied just before a crash can be applied again:
child runs are found by their `trial_id` tag under the parent before one is created, params
and tags are re-set to the same values, artifacts overwrite, a status is set again — and
metrics are logged once per (run, step): the writer remembers the last step it logged for each
run, so an epoch reported twice (a trial restarted from its checkpoint recomputes the epoch in
flight) reaches MLflow once.

Progress lives in `applied.json` (how many operations are done, the runs they created, the
last step per run), replaced atomically after each operation.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Callable, Optional

from sweeps.errors import clip

SPOOL_DIR = "mlflow_spool"
OPS_FILE = "ops.jsonl"
APPLIED_FILE = "applied.json"
PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "trial_id"

log = logging.getLogger("sweeps.mlflow_spool")
_append_lock = threading.Lock()


def quick_failing_requests() -> None:
    """MLflow's HTTP client retries a failed request 7 times with backoff and waits up to 120 s
    per request by default: minutes before the writer learns the server is down. The writer
    retries on its own terms, so each request is one attempt of at most 10 s (a user's own
    settings of these variables win)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def spool_dir(run_dir: str) -> str:
    return os.path.join(run_dir, SPOOL_DIR)


class Spool:
    """The operations of one sweep, in order, on disk. Only the path crosses a pickle (Tune
    saves the callbacks that hold one); the parsed operations are cached per process."""

    def __init__(self, run_dir: str):
        self.path = spool_dir(run_dir)
        self._parsed: list[dict] = []  # operations read so far, in order
        self._offset = 0               # bytes of ops.jsonl they came from

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.path, self._parsed, self._offset = state["path"], [], 0

    @property
    def ops_path(self) -> str:
        return os.path.join(self.path, OPS_FILE)

    @property
    def applied_path(self) -> str:
        return os.path.join(self.path, APPLIED_FILE)

    def append(self, op: dict[str, Any]) -> None:
        """Durably record one operation (returns once it is on disk)."""
        line = json.dumps(op, separators=(",", ":"), allow_nan=False) + "\n"
        with _append_lock:
            os.makedirs(self.path, exist_ok=True)
            with open(self.ops_path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())

    def ops(self) -> list[dict]:
        """Every complete operation in order (a line cut short by a crash is ignored). Only the
        bytes appended since the last call are read: the writer polls this twice a second."""
        try:
            with open(self.ops_path, "rb") as f:
                f.seek(self._offset)
                tail = f.read()
        except FileNotFoundError:
            return []
        end = tail.rfind(b"\n") + 1  # an unterminated last piece: not complete yet
        for line in tail[:end].split(b"\n")[:-1]:
            try:
                self._parsed.append(json.loads(line))
            except ValueError:
                log.warning("spool: skipped an unreadable line of %s", self.ops_path)
        self._offset += end
        return list(self._parsed)

    def reported_metrics(self) -> dict[str, dict[int, dict[str, float]]]:
        """{trial key: {step: metrics}} from every metrics operation, a later report of a step
        updating an earlier one (the parent run's metrics, which have no key, left out). The
        durable record of each epoch a trial reported, across --resume (Tune starts a restored
        trial's result.json afresh)."""
        out: dict[str, dict[int, dict[str, float]]] = {}
        for op in self.ops():
            if op.get("op") == "metrics" and "key" in op:
                out.setdefault(op["key"], {}).setdefault(int(op["step"]), {}).update(op["metrics"])
        return out

    def progress(self) -> dict:
        try:
            with open(self.applied_path, encoding="utf-8") as f:
                state = json.load(f)
        except (FileNotFoundError, ValueError):
            state = {}
        return {"applied": int(state.get("applied", 0)), "runs": dict(state.get("runs", {})),
                "steps": dict(state.get("steps", {})), "skipped": int(state.get("skipped", 0))}

    def save_progress(self, progress: dict) -> None:
        os.makedirs(self.path, exist_ok=True)
        tmp = self.applied_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(progress, f)
        os.replace(tmp, self.applied_path)

    def waiting(self) -> int:
        return max(0, len(self.ops()) - self.progress()["applied"])


def is_transient(error: Exception) -> bool:
    """Worth retrying: the server is down, slow or overloaded (connection errors surface as
    MlflowException with a 5xx code). A 4xx answer (a bad value, a missing run) will not
    change on retry: that operation is skipped and logged."""
    from mlflow.exceptions import MlflowException
    if isinstance(error, MlflowException):
        return error.get_http_status_code() >= 500
    return True


class Replayer:
    """Applies spooled operations to one MLflow store, in order, idempotently."""

    def __init__(self, spool: Spool, uri: str):
        from mlflow.tracking import MlflowClient
        self.spool = spool
        self.client = MlflowClient(uri)
        self.state = spool.progress()

    def pending(self) -> list[dict]:
        return self.spool.ops()[self.state["applied"]:]

    def apply_pending(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Apply what is pending; returns how many were applied. Raises a transient error
        (the caller retries later); a permanent one skips its operation."""
        done = 0
        for op in self.pending():
            if stop():
                break
            try:
                self.apply(op)
            except Exception as e:  # noqa: BLE001 — classified below
                if is_transient(e):
                    raise
                self.state["skipped"] += 1
                log.warning("spool: skipped %s (%s)", op.get("op"), clip(e, 300))
            self.state["applied"] += 1
            self.spool.save_progress(self.state)
            done += 1
        return done

    # ----------------------------------------------------------------------------------------
    def run_id(self, op: dict) -> Optional[str]:
        return op.get("run_id") or self.state["runs"].get(op.get("key", ""))

    def apply(self, op: dict) -> None:
        kind = op["op"]
        if kind == "child":
            self._child(op)
            return
        run_id = self.run_id(op)
        if run_id is None:  # its run was never created (that operation was skipped)
            raise ValueError(f"no run for key {op.get('key')}")
        c = self.client
        if kind == "metrics":
            self._metrics(run_id, op)
        elif kind == "params":
            from mlflow.entities import Param
            c.log_batch(run_id, params=[Param(k, v) for k, v in op["params"].items()])
        elif kind == "tags":
            from mlflow.entities import RunTag
            c.log_batch(run_id, tags=[RunTag(k, v) for k, v in op["tags"].items()])
        elif kind == "artifacts":
            path = op["path"]
            if os.path.isdir(path):
                c.log_artifacts(run_id, path, op.get("artifact_path"))
            elif os.path.isfile(path):
                c.log_artifact(run_id, path, op.get("artifact_path"))
            else:
                log.warning("spool: %s is gone; not logged to run %s", clip(path, 200), run_id)
        elif kind == "status":
            c.update_run(run_id, status=op["status"])
        elif kind == "terminate":
            c.set_terminated(run_id, op["status"])
        elif kind == "end_children":
            self._end_children(run_id, op)
        else:
            raise ValueError(f"unknown spool operation {clip(kind, 40)}")

    def _child(self, op: dict) -> None:
        """Find (by trial_id tag under the parent) or create the trial's run; (re)open it."""
        from mlflow.entities import Param
        c, key = self.client, op["key"]
        run_id = self.state["runs"].get(key)
        if run_id is None:
            found = c.search_runs([op["experiment_id"]],
                                  filter_string=f"tags.`{PARENT_TAG}` = '{op['parent_run_id']}' "
                                                f"and tags.{TRIAL_TAG} = '{key}'", max_results=1)
            if found:
                run_id = found[0].info.run_id
            else:
                run_id = c.create_run(op["experiment_id"], run_name=op["run_name"],
                                      tags=op["tags"]).info.run_id
            self.state["runs"][key] = run_id
            self.spool.save_progress(self.state)  # before anything else can fail
        elif c.get_run(run_id).info.status != "RUNNING":  # a re-run trial: running again
            c.update_run(run_id, status="RUNNING")
        c.log_batch(run_id, params=[Param(k, v) for k, v in op["params"].items()])

    def _metrics(self, run_id: str, op: dict) -> None:
        from mlflow.entities import Metric
        key = op.get("key") or run_id
        last = self.state["steps"].get(key, -1)
        step = int(op["step"])
        if step <= last:  # this epoch reached MLflow already (a recomputed report)
            return
        c = self.client
        c.log_batch(run_id, metrics=[Metric(k, float(v), int(op["ts"]), step)
                                     for k, v in op["metrics"].items()])
        self.state["steps"][key] = step

    def _end_children(self, parent_run_id: str, op: dict) -> None:
        """Any child still RUNNING under the parent (its trial never reported an end) → KILLED."""
        runs = self.client.search_runs(
            [op["experiment_id"]], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' "
                                                 f"and attributes.status = 'RUNNING'")
        for run in runs:
            self.client.set_terminated(run.info.run_id, op.get("status", "KILLED"))


class SpoolWriter:
    """The background thread that drains a spool into MLflow, retrying while the server is down.

    `on_event(text)` gets one line when the server stops answering and when it is back (the
    CLI prints it); details go to the log.
    """

    POLL_S = 0.5
    MAX_BACKOFF_S = 5.0

    def __init__(self, spool: Spool, uri: str, on_event: Callable[[str], None] = lambda s: None):
        self.spool = spool
        self.uri = uri
        self.on_event = on_event
        self.down_since: Optional[float] = None
        self.last_error = ""
        self._stop = threading.Event()
        self._replayer: Optional[Replayer] = None
        self._thread = threading.Thread(target=self._run, name="mlflow-spool-writer", daemon=True)
        self._lock = threading.Lock()  # one drain at a time (the thread or a final flush)

    def start(self) -> "SpoolWriter":
        self._thread.start()
        return self

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            ok = self.drain_once()
            if ok:
                backoff = 1.0
                self._stop.wait(self.POLL_S)
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.MAX_BACKOFF_S)

    def drain_once(self, stop: Callable[[], bool] = lambda: False) -> bool:
        """One pass over what is pending; False if the server did not answer."""
        with self._lock:
            try:
                if self._replayer is None:
                    self._replayer = Replayer(self.spool, self.uri)
                self._replayer.apply_pending(stop)
            except Exception as e:  # noqa: BLE001 — transient by construction (see Replayer)
                self.last_error = clip(e, 200)
                if self.down_since is None:
                    self.down_since = time.time()
                    self.on_event(f"MLflow not answering ({clip(e, 120)}); trials go on, "
                                  f"writes wait in {self.spool.path}")
                log.warning("spool: MLflow write failed, will retry: %s", clip(e, 500))
                return False
        if self.down_since is not None:
            self.on_event(f"MLflow answering again after {time.time() - self.down_since:.0f} s; "
                          f"replaying the spool")
            self.down_since = None
        return True

    def close(self, patience_s: float = 120.0, retry_s: float = 10.0) -> int:
        """Stop the thread, then drain what is left: for up to `patience_s` while the server
        answers, for `retry_s` more once it does not. Returns how many operations still wait."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        deadline = time.time() + patience_s
        failing_since: Optional[float] = None
        while True:
            ok = self.drain_once(stop=lambda: time.time() > deadline)
            left = self.waiting()
            if ok and not left:
                return 0
            now = time.time()
            failing_since = None if ok else (failing_since or now)
            if now > deadline or (failing_since is not None and now - failing_since >= retry_s):
                return left
            if not ok:
                time.sleep(2.0)

    def waiting(self) -> int:
        return self.spool.waiting()


def replay(run_dir: str, uri: str, patience_s: float = 600.0,
           retry_s: float = 10.0) -> tuple[int, int, str]:
    """`--sync-mlflow`: apply a sweep's spool now. Returns (applied, still waiting, last error)."""
    quick_failing_requests()
    spool = Spool(run_dir)
    before = spool.waiting()
    writer = SpoolWriter(spool, uri)
    left = writer.close(patience_s, retry_s)  # never started: close() just drains
    return before - left, left, writer.last_error
