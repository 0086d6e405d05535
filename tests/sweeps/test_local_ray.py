"""Orphans of a killed sweep's local Ray are stopped by the next sweep in the same folder, by
pid, and only they; raylet messages go to the sweep log with one short terminal line."""
from __future__ import annotations

import json
import subprocess
import sys
import time

from sweeps import local_ray


def sleeper(marker: str) -> subprocess.Popen:
    """A stand-in for a Ray agent: its command line names the session directory."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", marker])


def dead_driver() -> dict:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = local_ray._start_time(proc.pid)
    proc.wait()
    return {"pid": proc.pid, "start": start}


def write_records(folder, records) -> None:
    (folder / local_ray.RECORD).write_text(json.dumps(records))


def test_the_processes_of_a_dead_drivers_session_are_stopped(tmp_path):
    orphan = sleeper("/tmp/ray/session_2026-11-29_dead_1")
    bystander = sleeper("/tmp/ray/session_2026-11-29_other_2")
    try:
        write_records(tmp_path, [{**dead_driver(), "session_dir": "/tmp/ray/session_2026-11-29_dead_1"}])
        assert local_ray.stop_orphans(str(tmp_path)) == [orphan.pid]
        assert orphan.wait(timeout=10) == -9
        assert bystander.poll() is None
        assert not (tmp_path / local_ray.RECORD).exists()  # nothing left to watch
    finally:
        for p in (orphan, bystander):
            p.kill()
            p.wait()


def test_a_live_drivers_session_is_left_alone(tmp_path):
    import os
    marker = "/tmp/ray/session_2026-11-29_live_3"
    agent = sleeper(marker)
    try:
        me = {"pid": os.getpid(), "start": local_ray._start_time(os.getpid()),
              "session_dir": marker}
        write_records(tmp_path, [me])
        assert local_ray.stop_orphans(str(tmp_path)) == []
        assert agent.poll() is None
        assert json.loads((tmp_path / local_ray.RECORD).read_text()) == [me]
        # a reused pid (same number, another start time) does not count as the driver
        write_records(tmp_path, [{**me, "start": "1"}])
        assert local_ray.stop_orphans(str(tmp_path)) == [agent.pid]
    finally:
        agent.kill()
        agent.wait()


def test_a_corrupt_record_is_ignored(tmp_path):
    (tmp_path / local_ray.RECORD).write_text("{not json")
    assert local_ray.stop_orphans(str(tmp_path)) == []


def test_raylet_messages_go_to_the_log_and_one_short_line(monkeypatch, capsys, caplog):
    from ray._private import worker
    monkeypatch.setattr(worker, "print_to_stdstream", worker.print_to_stdstream)
    said = []
    local_ray.route_raylet_messages(said.append)
    message = ("A worker died or was killed while executing a task by an unexpected system "
               "error.\nRayActorError: ...\n" + "detail line\n" * 30)
    with caplog.at_level("WARNING", logger="sweeps.local_ray"):
        for _ in range(3):
            worker.print_to_stdstream({"lines": [message], "pid": "raylet", "is_err": False},
                                      ignore_prefix=False)
    assert len(said) == 1 and said[0].startswith("Ray: A worker died") and len(said[0]) < 170
    assert "details in sweep.log" in said[0]
    assert capsys.readouterr().out == ""
    assert sum("detail line" in r.getMessage() for r in caplog.records) == 3


def test_an_agent_is_known_by_the_files_it_holds_open_not_only_by_its_title(tmp_path):
    """Ray renames its agents (`ray::DashboardAgent`): their logs under the session give
    them away."""
    session = tmp_path / "session_2026-11-29_x_4"
    (session / "logs").mkdir(parents=True)
    agent = subprocess.Popen([sys.executable, "-c",
                              "import sys, time; f = open(sys.argv[1], 'a'); time.sleep(120)",
                              str(session / "logs" / "agent.log")])
    try:
        import time
        for _ in range(100):  # until it has opened its log (its command line names it too)
            if local_ray._holds_file_under(agent.pid, str(session) + "/"):
                break
            time.sleep(0.1)
        assert local_ray._holds_file_under(agent.pid, str(session) + "/")
        assert not local_ray._holds_file_under(agent.pid, str(tmp_path / "elsewhere") + "/")
        write_records(tmp_path, [{**dead_driver(), "session_dir": str(session)}])
        assert local_ray.stop_orphans(str(tmp_path)) == [agent.pid]
        assert agent.wait(timeout=10) == -9
    finally:
        agent.kill()
        agent.wait()



def test_stop_started_leaves_nothing_of_a_session_that_keeps_spawning(tmp_path):
    """A parent that keeps starting processes naming the Ray dir (as a raylet starts workers):
    after stop_started nothing of the session or the Ray dir is left, and nothing else was
    touched."""
    marker = str(tmp_path / "ray_dir")
    spawner = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "while True:\n"
         "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', sys.argv[1]],\n"
         "                     start_new_session=True)\n"
         "    time.sleep(0.05)\n", marker],
        start_new_session=True)
    bystander = sleeper("/tmp/ray/session_2026-11-29_other_4")
    try:
        deadline = time.monotonic() + 20
        while len(local_ray.pids_of(marker)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        stopped = local_ray.stop_started(marker, sid=spawner.pid)
        assert spawner.pid in stopped and len(stopped) >= 3
        assert spawner.wait(timeout=10) == -9
        assert local_ray.pids_of(marker) == [] and local_ray.session_pids(spawner.pid) == []
        assert bystander.poll() is None
    finally:
        spawner.kill()
        spawner.wait()
        local_ray.kill(local_ray.pids_of(marker))
        bystander.kill()
        bystander.wait()
