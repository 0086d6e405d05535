"""The MLflow spool and its writer (no Ray): durable, ordered, idempotent, never blocking."""
from __future__ import annotations

import os
import pickle
import shutil
import socket
import time

import pytest
from mlflow.tracking import MlflowClient

from sweeps.mlflow_spool import PARENT_TAG, Spool, SpoolWriter, replay


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory):
    """MLflow's schema migrations take seconds: make one empty store, copy it per test."""
    path = tmp_path_factory.mktemp("db") / "mlflow.db"
    MlflowClient("sqlite:///" + str(path)).search_experiments()
    return path


@pytest.fixture
def store(tmp_path, empty_db):
    shutil.copyfile(empty_db, tmp_path / "mlflow.db")
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(exp).info.run_id
    return uri, client, exp, parent


def child_op(exp, parent, key, **params):
    return {"op": "child", "key": key, "experiment_id": exp, "parent_run_id": parent,
            "run_name": "trial-" + key, "tags": {PARENT_TAG: parent, "trial_id": key},
            "params": {k: str(v) for k, v in params.items()}}


def metrics_op(key, step, value, ts=None):
    return {"op": "metrics", "key": key, "step": step, "ts": ts or int(time.time() * 1000),
            "metrics": {"val": value}}


def children(client, exp, parent):
    return client.search_runs([exp], filter_string=f"tags.`{PARENT_TAG}` = '{parent}'")


def test_replay_builds_nested_runs_in_order(tmp_path, store):
    uri, client, exp, parent = store
    spool = Spool(str(tmp_path))
    spool.append(child_op(exp, parent, "t1", lam=0.1))
    for epoch in (1, 2, 3):
        spool.append(metrics_op("t1", epoch, epoch / 10))
    spool.append({"op": "tags", "key": "t1", "tags": {"outcome": "finished"}})
    spool.append({"op": "terminate", "key": "t1", "status": "FINISHED"})
    assert spool.waiting() == 6

    sent, left, _ = replay(str(tmp_path), uri)
    assert (sent, left) == (6, 0) and spool.waiting() == 0
    (run,) = children(client, exp, parent)
    assert run.data.params == {"lam": "0.1"}
    assert run.data.tags["outcome"] == "finished" and run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.3)]


def test_replaying_everything_again_duplicates_nothing(tmp_path, store):
    """A crash between applying an operation and recording it re-applies it: harmless."""
    uri, client, exp, parent = store
    spool = Spool(str(tmp_path))
    spool.append(child_op(exp, parent, "t1", lam=0.1))
    spool.append(metrics_op("t1", 1, 0.5))
    spool.append({"op": "terminate", "key": "t1", "status": "FINISHED"})
    replay(str(tmp_path), uri)
    os.remove(spool.applied_path)  # forget every bit of progress
    assert spool.waiting() == 3
    replay(str(tmp_path), uri)
    (run,) = children(client, exp, parent)
    assert len(client.get_metric_history(run.info.run_id, "val")) == 1


def test_a_recomputed_epoch_reaches_mlflow_once(tmp_path, store):
    """A trial restarted from its checkpoint reports the epoch in flight again (new timestamp)."""
    uri, client, exp, parent = store
    spool = Spool(str(tmp_path))
    spool.append(child_op(exp, parent, "t1"))
    spool.append(metrics_op("t1", 1, 0.5, ts=1000))
    spool.append(metrics_op("t1", 2, 0.6, ts=2000))
    spool.append(child_op(exp, parent, "t1"))          # restarted: on_trial_start again
    spool.append(metrics_op("t1", 2, 0.6, ts=3000))    # the epoch in flight, recomputed
    spool.append(metrics_op("t1", 3, 0.7, ts=4000))
    replay(str(tmp_path), uri)
    (run,) = children(client, exp, parent)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val")] == [1, 2, 3]


def test_a_rerun_trial_is_running_again_and_end_children_closes_leftovers(tmp_path, store):
    uri, client, exp, parent = store
    spool = Spool(str(tmp_path))
    spool.append(child_op(exp, parent, "done"))
    spool.append({"op": "terminate", "key": "done", "status": "FINISHED"})
    spool.append(child_op(exp, parent, "left"))  # its end was never reported
    spool.append({"op": "terminate", "key": "left", "status": "KILLED"})  # sweep interrupted
    spool.append(child_op(exp, parent, "left"))  # --resume re-runs it
    replay(str(tmp_path), uri)
    status = {r.data.tags["trial_id"]: r.info.status for r in children(client, exp, parent)}
    assert status == {"done": "FINISHED", "left": "RUNNING"}
    spool.append({"op": "end_children", "run_id": parent, "experiment_id": exp,
                  "status": "KILLED"})
    spool.append({"op": "terminate", "run_id": parent, "status": "FINISHED"})
    replay(str(tmp_path), uri)
    status = {r.data.tags["trial_id"]: r.info.status for r in children(client, exp, parent)}
    assert status == {"done": "FINISHED", "left": "KILLED"}
    assert client.get_run(parent).info.status == "FINISHED"


def test_an_operation_the_server_refuses_is_skipped_not_retried_forever(tmp_path, store):
    uri, client, exp, parent = store
    spool = Spool(str(tmp_path))
    spool.append(child_op(exp, parent, "t1", lam=0.1))
    spool.append({"op": "params", "key": "t1", "params": {"lam": "0.2"}})  # params are immutable
    spool.append(metrics_op("t1", 1, 0.5))
    sent, left, _ = replay(str(tmp_path), uri)
    assert (sent, left) == (3, 0)
    assert Spool(str(tmp_path)).progress()["skipped"] == 1
    (run,) = children(client, exp, parent)
    assert run.data.params["lam"] == "0.1"
    assert len(client.get_metric_history(run.info.run_id, "val")) == 1


def test_an_unreachable_server_keeps_everything_and_says_so_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    spool = Spool(str(tmp_path))
    spool.append(child_op("1", "p", "t1"))
    spool.append(metrics_op("t1", 1, 0.5))
    events = []
    writer = SpoolWriter(spool, f"http://127.0.0.1:{closed_port()}", on_event=events.append)
    assert writer.drain_once() is False and writer.drain_once() is False
    assert len(events) == 1 and "not answering" in events[0]
    t0 = time.time()
    assert writer.close(patience_s=30, retry_s=1) == 2
    assert time.time() - t0 < 15  # gives up after retry_s, does not hang
    assert spool.waiting() == 2 and writer.last_error


def test_a_torn_last_line_is_ignored(tmp_path):
    spool = Spool(str(tmp_path))
    spool.append(metrics_op("t1", 1, 0.5))
    with open(spool.ops_path, "a") as f:
        f.write('{"op": "metr')  # not complete yet (or the process died mid-write)
    assert len(spool.ops()) == 1
    with open(spool.ops_path, "a") as f:  # read incrementally: a piece completed later counts
        f.write('ics", "key": "t1", "step": 2, "ts": 1, "metrics": {"val": 0.4}}\n')
    spool.append(metrics_op("t1", 3, 0.3))
    assert [op["step"] for op in spool.ops()] == [1, 2, 3]
    assert [op["step"] for op in Spool(str(tmp_path)).ops()] == [1, 2, 3]  # a fresh reader


def test_the_tracker_pickles_and_only_appends(tmp_path):
    """Tune saves callbacks with the experiment: the tracker holds paths, not clients."""
    from sweeps.space import load_space
    from sweeps.tracking import MlflowTrialTracker

    space = load_space("examples/custom_space.yaml")
    tracker = pickle.loads(pickle.dumps(MlflowTrialTracker(str(tmp_path), "1", "p", space)))

    class FakeTrial:  # the two attributes the tracker reads from a Tune Trial
        trial_id = "abc_00000"
        config = {"dropout": 0.1}

    tracker.on_trial_start(0, [], FakeTrial())
    tracker.on_trial_result(0, [], FakeTrial(), {"epoch": 1.0, "val_mse": 0.5, "pid": 7,
                                                 "checkpoint_fallbacks": 1.0})
    tracker.on_trial_result(0, [], FakeTrial(), {"epoch": 2.0, "val_mse": 0.4,
                                                 "checkpoint_fallbacks": 1.0})
    ops = Spool(str(tmp_path)).ops()
    assert [o["op"] for o in ops] == ["child", "metrics", "tags", "metrics"]
    assert ops[0]["tags"][PARENT_TAG] == "p" and ops[0]["params"]["dropout"] == "0.1"
    assert ops[1]["metrics"] == {"val_mse": 0.5} and ops[1]["step"] == 1
    assert "checkpoint_fallback" in ops[2]["tags"]


def test_sync_mlflow_cli_sends_a_spool_and_names_bad_input(tmp_path, store, capsys):
    import json

    from sweeps import run
    uri, client, exp, parent = store
    run_dir = tmp_path / "s"
    run_dir.mkdir()
    (run_dir / "space.yaml").write_text(open("examples/custom_space.yaml").read())
    (run_dir / "sweep.json").write_text(json.dumps({
        "space_path": "examples/custom_space.yaml", "tracking_uri": uri, "experiment_id": exp,
        "parent_run_id": parent, "overrides": {}}))
    spool = Spool(str(run_dir))
    spool.append(child_op(exp, parent, "t1"))
    spool.append(metrics_op("t1", 1, 0.5))
    assert run.main(["--sync-mlflow", "--name", "s", "--output", str(tmp_path)]) == 0
    assert "sent 2 spooled write(s)" in capsys.readouterr().out
    assert len(children(client, exp, parent)) == 1

    assert run.main(["--sync-mlflow", "--output", str(tmp_path)]) == 2
    assert run.main(["--sync-mlflow", "--name", "nope", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --sync-mlflow: give --name (or --space for its latest sweep)",
                   f"error: --sync-mlflow: {tmp_path}/nope holds no sweep (sweep.json missing)"]


def test_progress_tallies_survive_a_resume():
    from sweeps.progress import ProgressPrinter
    from sweeps.space import load_space

    space = load_space("examples/custom_space.yaml")
    before = ProgressPrinter(space)
    before.counts.update(finished=2, pruned=1)
    before.best = (0.25, "abc")
    before.running = {"def"}
    after = ProgressPrinter(space)
    after.set_state(pickle.loads(pickle.dumps(before.get_state())))
    assert after.tallies() == before.tallies()
    assert after.tallies().startswith("done 2 · running 1 · pruned 1 · failed 0")
