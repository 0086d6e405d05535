"""Housekeeping for the local Ray a sweep starts: no processes left behind, no raylet noise on
the terminal.

Orphans: Ray's processes normally end with `ray.shutdown()`. A driver that is SIGKILLed cannot
run it; Ray then leaves `DashboardAgent` and `RuntimeEnvAgent` (~210 MB) running with parent 1.
So a sweep records its local Ray session in the output folder (`.local_ray.json`: the driver's
pid and start time, Ray's session directory), and the next sweep started in the same output
folder stops, by pid, the processes of a recorded session whose driver is gone. A process
belongs to that session if its command line names the session directory (unique per
`ray.init`) or it holds a file open under it (Ray's agents rename their process titles but
keep their logs there); nothing else is touched.

Noise: when a worker dies, Ray's driver prints the raylet's multi-line explanation to the
terminal (`ray._private.worker.listen_error_messages` → `print_to_stdstream`, regardless of
`log_to_driver`). `route_raylet_messages` sends those messages to the sweep log and prints one
short line instead.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import Callable, Optional

from sweeps.errors import clip

RECORD = ".local_ray.json"
log = logging.getLogger("sweeps.local_ray")


def proc_stat(pid: int | str) -> Optional[list[str]]:
    """The fields of /proc/<pid>/stat after the command name: [0] is field 3 (state), [1] the
    parent pid, [11]/[12] utime/stime, [19] field 22 (start time, clock ticks since boot);
    None if the process is gone. (The name may hold spaces and parentheses: split at the last
    ")".)"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > 19 else None


def _start_time(pid: int) -> Optional[str]:
    """A process's start time: tells a reused pid apart."""
    fields = proc_stat(pid)
    return None if fields is None else fields[19]


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def pids_of(path: str) -> list[int]:
    """Processes (other than this one) whose command line names `path` or that hold a file open
    under it. Ray renames its agents' process titles (`ray::DashboardAgent`), so their command
    line no longer shows the session; their open log files under it still do."""
    found = []
    needle = path.encode()
    prefix = os.path.join(path, "")
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        if needle in _cmdline(pid) or _holds_file_under(pid, prefix):
            found.append(pid)
    return found


def session_pids(sid: int) -> list[int]:
    """Processes of session `sid` (a process started with start_new_session=True and its
    descendants that did not leave it)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.getsid(int(entry)) == sid and not _is_zombie(int(entry)):
                found.append(int(entry))
        except OSError:
            continue
    return found


def _is_zombie(pid: int) -> bool:
    """Already dead, waiting for its parent to reap it (or gone): nothing left to stop."""
    fields = proc_stat(pid)
    return fields is None or fields[0] == "Z"


def kill(pids) -> list[int]:
    """SIGKILL each pid; returns those that were still there."""
    killed = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except OSError:
            pass
    return killed


def stop_started(ray_dir: str, sid: Optional[int] = None, wait_s: float = 15.0) -> list[int]:
    """SIGKILL what a test or benchmark started: a CLI run in its own session `sid` and every
    process of the private Ray temp dir `ray_dir` it gave that run. Repeats until none is left
    (or `wait_s` passes): a raylet may start a worker between the listing and its own death, and
    a killed process holds its files until the kernel has torn it down."""
    stopped: set[int] = set()
    deadline = time.monotonic() + wait_s
    while True:
        left = set(pids_of(ray_dir)) | (set(session_pids(sid)) if sid is not None else set())
        stopped |= set(kill(left))
        if not left or time.monotonic() > deadline:
            return sorted(stopped)
        time.sleep(0.2)


def _holds_file_under(pid: int, prefix: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                return True
        except OSError:
            continue
    return False


def record_session(output_dir: str) -> None:
    """Remember this process's local Ray session (call right after ray.init started it)."""
    import ray
    node = ray._private.worker._global_node  # the session this process started
    session_dir = node.get_session_dir_path() if node is not None else None
    if not session_dir or not os.path.isdir("/proc"):
        return
    records = [r for r in _read(output_dir) if _alive(r)]
    records.append({"pid": os.getpid(), "start": _start_time(os.getpid()),
                    "session_dir": session_dir})
    _write(output_dir, records)


def forget_session(output_dir: str) -> None:
    """This process shut its Ray down: nothing of it to clean up later."""
    records = [r for r in _read(output_dir) if r.get("pid") != os.getpid()]
    _write(output_dir, records)


def stop_orphans(output_dir: str) -> list[int]:
    """SIGKILL the processes of recorded sessions whose driver is gone; returns their pids."""
    records = _read(output_dir)
    if not records:
        return []
    stopped, keep = [], []
    for record in records:
        if _alive(record):
            keep.append(record)
            continue
        marker = str(record.get("session_dir", ""))
        if len(marker) < 10:  # never match broadly
            continue
        stopped += kill(pids_of(marker))
    _write(output_dir, keep)
    if stopped:
        log.warning("stopped %d process(es) left by a local Ray whose sweep was killed: %s",
                    len(stopped), stopped)
    return stopped


def _alive(record: dict) -> bool:
    pid = record.get("pid")
    if not isinstance(pid, int):
        return False
    start = _start_time(pid)
    return start is not None and start == record.get("start")


def _read(output_dir: str) -> list[dict]:
    try:
        with open(os.path.join(output_dir, RECORD)) as f:
            records = json.load(f)
    except (OSError, ValueError):
        return []
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def _write(output_dir: str, records: list[dict]) -> None:
    path = os.path.join(output_dir, RECORD)
    try:
        if not records:
            if os.path.exists(path):
                os.remove(path)
            return
        os.makedirs(output_dir, exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump(records, f)
        os.replace(path + ".tmp", path)
    except OSError as e:  # bookkeeping only: never fail a sweep for it
        log.warning("cannot update %s: %s", clip(path, 200), e)


def route_raylet_messages(say: Callable[[str], None], quiet_s: float = 30.0) -> None:
    """Raylet error messages → the sweep log (whole) and one short terminal line (at most one
    per `quiet_s`). Ray's other output to the driver is left as it is."""
    from ray._private import worker

    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_sweeps_routed", False):
        return
    last = [0.0]

    def routed(data, ignore_prefix: bool):
        if data.get("pid") != "raylet":
            return original(data, ignore_prefix)
        lines = [str(line) for line in data.get("lines", [])]
        for line in lines:
            log.warning("raylet: %s", line)
        if lines and time.time() - last[0] > quiet_s:
            last[0] = time.time()
            first = lines[0].strip().split("\n")[0]
            say(f"Ray: {clip(first, 120)} (details in sweep.log)")

    routed._sweeps_routed = True
    worker.print_to_stdstream = routed
