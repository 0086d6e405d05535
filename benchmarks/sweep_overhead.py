"""Where a sweep trial's wall time goes: Ray/Train start-up, workload set-up, training steps,
evaluation, report + checkpoint, teardown and the gap to the next trial.

Each case runs the product's CLI (`python sweeps/run.py --space ... --smoke`) in its own
process on a private local Ray, with SWEEPS_TIMELINE=<file> set: the per-trial driver, the Train
controller and every worker append timestamped events to that file (sweeps/timeline.py,
workloads/kit/loop.py); the breakdown is read from them. The plain in-process loop
(`LocalSession`, workloads/contract.py) runs the same workload and knobs as the baseline, in a
fresh process of its own (so its imports count too), single-threaded like a 1-CPU Ray worker.

Cases: the trivial workload (examples/custom_workload.py), ten_lm (search_spaces/ten_energy.yaml)
and saliency (search_spaces/entropy_lambda.yaml), at smoke size, with 1 and 2 workers per trial.
The benchmark's copy of each space has no early stopping, so every trial runs every epoch.

    python benchmarks/sweep_overhead.py [--json PATH] [--trials 3] [--repeats 1]
                                        [--cases trivial,ten_lm,saliency] [--workers 1,2]
    python benchmarks/sweep_overhead.py --sweep entropy_lambda [--json PATH]
        # a whole shipped sweep as a user runs it (no --smoke): the fraction of its wall time
        # spent in training steps

Columns (seconds, median over trials; rank 0's clock for the workers):
    wall       trial start in the Tune driver -> its `fit()` returned (a trial Tune stopped
               first — max_t reached, ASHA — ends at its last recorded event)
    ctrl       -> Train controller running (TorchTrainer built, the controller actor's process
               importing Ray Train, its first callbacks)
    wgroup     -> worker actors created (placement group, worker processes + their imports)
    pgroup     -> worker group ready (train context, torch process group, Ray's callbacks)
    launch     -> the train function entered on the worker (unpickling it: its imports)
    imports    -> the workload module imported on the worker
    setup      -> model, optimizer, data ready (the workload's setup, session, DDP wrap)
    steps      time in training steps, all epochs
    eval       time in evaluation, all epochs
    report     time in report + checkpoint, all epochs
    teardown   the worker's train function returned -> `fit()` returned in the driver
    gap        `fit()` returned -> the next trial's driver started (Tune's bookkeeping and a new
               driver process importing Tune, Train and torch)
    fixed      wall - steps - eval: the issue's "fixed overhead per trial"
    CPU busy at start   machine-wide CPU use (of all cores) from trial start to its first step:
               near 100 % means start-up is CPU work (imports in fresh processes), low means it
               waits
A second table splits the sweep's CPU time by process role (from /proc, every 0.5 s), per
trial for the processes every trial starts, per sweep for the rest; a third gives each sweep's
wall time and the fraction of it spent in training steps (rank 0's steps, all trials), with
the most that fraction could be for the CPU work measured: the sweep's processes' CPU-seconds /
cores is the shortest wall they fit in, steps included. Sampling misses a process's last < 0.5 s,
so the CPU is undercounted and the "at most" is, if anything, too high.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sweeps.local_ray import proc_stat, stop_started  # noqa: E402
from workloads.timeline import TIMELINE_ENV  # noqa: E402

CASES = {  # name -> space file whose workload, fixed knobs and resources the case uses
    "trivial": "examples/custom_space.yaml",
    "ten_lm": "search_spaces/ten_energy.yaml",
    "saliency": "search_spaces/entropy_lambda.yaml",
}
COLUMNS = ["wall", "ctrl", "wgroup", "pgroup", "launch", "imports", "setup", "steps", "eval",
           "report", "teardown", "gap", "fixed"]


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def read_events(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    events = []
    with open(path) as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a killed process
    return events


def bench_space(case: str, work: str, full: bool) -> str:
    """The case's space file: as shipped for --sweep, else without early stopping."""
    import yaml
    src = os.path.join(REPO, CASES.get(case, case))
    if not os.path.isfile(src):  # a bare name, as the CLI takes it
        name = case if case.endswith(".yaml") else case + ".yaml"
        src = os.path.join(REPO, "search_spaces", name)
    if full:
        return src
    with open(src) as f:
        doc = yaml.safe_load(f)
    doc.pop("early_terminate", None)
    doc.get("budget", {}).pop("time_limit_s", None)
    path = os.path.join(work, os.path.basename(src))
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


def process_kind(pid: int) -> Optional[str]:
    """A Ray process's role from its title ("ray::TrainController.run" -> TrainController),
    else the program name; None for an idle pooled Ray worker or a vanished process."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    title = argv[0].decode(errors="replace").strip()
    if title.startswith("ray::"):
        kind = title[5:].split(".", 1)[0].split()[0] if title[5:] else ""
        return None if kind in ("", "IDLE") else kind
    for arg in argv[:3]:  # python <script>: name it by the script
        a = arg.decode(errors="replace")
        if a.endswith(".py"):
            name = os.path.basename(a)
            # a pooled Ray worker that never got a task or actor
            return "idle Ray worker" if name == "default_worker.py" else name
    name = os.path.basename(title.split()[0]) if title else None
    return "idle Ray worker" if name and name.startswith("python") else name


def process_cpu(pid: int) -> Optional[float]:
    """utime + stime of a process, in seconds."""
    fields = proc_stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """Machine-wide CPU busy fraction every `period` s (from /proc/stat), to tell start-up
    that waits from start-up that computes; and, when `sid` is set, the CPU time of every
    process of that session (the sweep, its Ray) by role — a process's last < 2·period s
    before it exits are not seen."""

    def __init__(self, period: float = 0.25, sid: Optional[int] = None):
        import threading
        self.period, self.samples = period, []  # (t, busy fraction of all CPUs since last)
        self.sid = sid
        self.procs: dict[int, dict] = {}  # pid -> {"kind", "cpu"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _scan(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                if os.getsid(pid) != self.sid:
                    continue
            except OSError:
                continue
            cpu, kind = process_cpu(pid), process_kind(pid)
            rec = self.procs.setdefault(pid, {"kind": None, "cpu": 0.0})
            if cpu is not None:
                rec["cpu"] = cpu
            if kind is not None:
                rec["kind"] = kind

    def cpu_by_kind(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for rec in self.procs.values():
            kind = rec["kind"] or "IDLE"
            o = out.setdefault(kind, {"processes": 0, "cpu_s": 0.0})
            o["processes"] += 1
            o["cpu_s"] += rec["cpu"]
        return out

    @staticmethod
    def _read() -> tuple[float, float]:
        with open("/proc/stat") as f:
            v = [float(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return sum(v) - idle, sum(v)

    def _run(self) -> None:
        busy0, total0 = self._read()
        tick = 0
        while not self._stop.wait(self.period):
            busy, total = self._read()
            if total > total0:
                self.samples.append((time.time(), (busy - busy0) / (total - total0)))
            busy0, total0 = busy, total
            tick += 1
            if self.sid is not None and tick % 2 == 0:
                self._scan()

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def busy(self, t0: float, t1: float) -> float:
        vals = [b for t, b in self.samples if t0 < t <= t1 + self.period]
        return sum(vals) / len(vals) if vals else float("nan")


def run_sweep(space: str, work: str, *, trials: Optional[int], workers: Optional[int],
              smoke: bool, env: dict, timeout: float, max_concurrent: Optional[int] = None) -> dict:
    """One CLI sweep on a private Ray; its timeline events and wall time."""
    timeline = os.path.join(work, "timeline.jsonl")
    ray_dir = tempfile.mkdtemp(prefix="so", dir="/tmp")
    args = [sys.executable, os.path.join(REPO, "sweeps", "run.py"), "--space", space,
            "--output", work, "--name", "s", "--ray-temp-dir", ray_dir]
    if smoke:
        args.append("--smoke")
    if trials:
        args += ["--trials", str(trials)]
    if workers:
        args += ["--workers-per-trial", str(workers)]
    if max_concurrent:
        args += ["--max-concurrent", str(max_concurrent)]
    full_env = {**os.environ, **env, TIMELINE_ENV: timeline}
    t0 = time.time()
    with open(os.path.join(work, "cli.log"), "w") as log, CpuSampler() as cpu:
        proc = subprocess.Popen(args, cwd=REPO, env=full_env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        cpu.sid = proc.pid  # its own session: the CLI, Ray and every Ray worker
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            stop_started(ray_dir, proc.pid)
            shutil.rmtree(ray_dir, ignore_errors=True)
    t1 = time.time()
    return {"rc": rc, "t0": t0, "t1": t1, "events": read_events(timeline), "cpu": cpu}


def run_local(space_path: str, work: str) -> dict:
    """The baseline: the same workload and knobs in a fresh plain process, LocalSession."""
    timeline = os.path.join(work, "local.jsonl")
    env = {**os.environ, TIMELINE_ENV: timeline}
    t0 = time.time()
    subprocess.run([sys.executable, os.path.abspath(__file__), "--_local", space_path],
                   cwd=REPO, env=env, check=True)
    t1 = time.time()
    return {"t0": t0, "t1": t1, "events": read_events(timeline)}


def local_main(space_path: str) -> None:
    """Child process of run_local: one training with LocalSession, one thread."""
    from sweeps.timeline import mark, process_start_time
    mark("local_process", t=process_start_time())
    mark("local_enter")
    import torch
    torch.set_num_threads(1)  # as a 1-CPU Ray Train worker (Ray sets OMP_NUM_THREADS=1)
    from sweeps.space import load_space
    from sweeps.sweep import Overrides
    from workloads.contract import LocalSession
    space = Overrides(smoke=True).apply(load_space(space_path))
    knobs = space.trial_config(dict(space.baseline or {}))
    workload = space.get_workload()
    mark("local_imported")
    session = LocalSession()
    mark("local_session", rank=0)
    workload.train(knobs, session)
    mark("local_exit", rank=0)


# --------------------------------------------------------------------------------------------
# Reading the timeline
# --------------------------------------------------------------------------------------------
def first(events: list[dict], phase: str, **match: Any) -> Optional[float]:
    ts = [e["t"] for e in events if e["phase"] == phase and e.get("t") is not None
          and all(e.get(k) == v for k, v in match.items())]
    return min(ts) if ts else None


def last(events: list[dict], phase: str, **match: Any) -> Optional[float]:
    ts = [e["t"] for e in events if e["phase"] == phase and e.get("t") is not None
          and all(e.get(k) == v for k, v in match.items())]
    return max(ts) if ts else None


def loop_phases(events: list[dict], pid: int) -> dict[str, float]:
    """steps / eval / report summed over the epochs of one worker process."""
    mine = sorted((e for e in events if e["pid"] == pid), key=lambda e: e["t"])
    out = {"steps": 0.0, "eval": 0.0, "report": 0.0}
    prev: dict[str, float] = {}
    intervals = []
    for e in mine:
        p = e["phase"]
        if p == "steps_start":
            prev = {"steps_start": e["t"]}
        elif p == "steps_done" and "steps_start" in prev:
            out["steps"] += e["t"] - prev["steps_start"]
            intervals.append((prev["steps_start"], e["t"]))
            prev["steps_done"] = e["t"]
        elif p == "eval_done" and "steps_done" in prev:
            out["eval"] += e["t"] - prev["steps_done"]
            prev["eval_done"] = e["t"]
        elif p == "report_done" and "eval_done" in prev:
            out["report"] += e["t"] - prev["eval_done"]
            prev = {}
    out["epochs"] = float(sum(1 for e in mine if e["phase"] == "report_done"))
    out["_intervals"] = intervals  # type: ignore[assignment]
    return out


def trials_of(events: list[dict]) -> list[dict]:
    """Per-trial breakdown (rank 0's worker), in start order."""
    runs = sorted({e["run"] for e in events if e["phase"] == "trial_start"},
                  key=lambda r: first(events, "trial_start", run=r))
    rows = []
    for i, run in enumerate(runs):
        t_start = first(events, "trial_start", run=run)
        t_end = last(events, "trial_end", run=run)
        pids = [e["pid"] for e in events if e["phase"] == "worker_enter" and e.get("run") == run]
        rank0 = next((e["pid"] for e in events if e["phase"] == "worker_session"
                      and e.get("rank") == 0 and e["pid"] in pids), None)
        row: dict[str, Any] = {"run": run}
        if t_end is None and rank0 is not None and last(events, "report_done", pid=rank0):
            # Tune stopped the driver before fit() returned — after its last result reached
            # max_t, or ASHA pruned it: the trial ends with the run's last recorded event.
            t_end = max(e["t"] for e in events if e.get("run") == run or e["pid"] in pids)
            row["stopped_by_tune"] = True
        if t_end is None or rank0 is None:
            # stopped from outside (ASHA, time limit): the driver was killed before its end
            # mark. Its training still counts in the sweep's time in steps.
            row["incomplete"] = True
            row["_intervals"] = [iv for e in events if e["phase"] == "worker_session"
                                 and e.get("rank") == 0 and e["pid"] in pids
                                 for iv in loop_phases(events, e["pid"])["_intervals"]]
            rows.append(row)
            continue
        c_start = first(events, "controller_start", run=run)
        created = first(events, "workers_created", run=run)
        ready = first(events, "worker_group_ready", run=run)
        enter = first(events, "worker_enter", pid=rank0)
        imported = first(events, "worker_imported", pid=rank0)
        setup_done = first(events, "setup_done", pid=rank0)
        exit_ = last(events, "worker_exit", pid=rank0)
        loop = loop_phases(events, rank0)
        row.update({
            "wall": t_end - t_start,
            "ctrl": c_start - t_start,
            "wgroup": created - c_start,  # incl. the scheduling decision (~0)
            "pgroup": ready - created,
            "launch": enter - ready,
            "imports": imported - enter,
            "setup": setup_done - imported,
            "steps": loop["steps"], "eval": loop["eval"], "report": loop["report"],
            "teardown": t_end - exit_ if exit_ else float("nan"),
            "epochs": loop["epochs"],
            "controller_process_start": first(events, "controller_process", run=run),
            "worker_process_start": first(events, "worker_process", pid=rank0),
            "t_start": t_start, "t_end": t_end, "t_first_step": setup_done,
            "_intervals": loop["_intervals"],
        })
        row["fixed"] = row["wall"] - row["steps"] - row["eval"]
        if i + 1 < len(runs):
            row["gap"] = first(events, "trial_start", run=runs[i + 1]) - t_end
        rows.append(row)
    return rows


def local_row(res: dict) -> dict:
    ev = res["events"]
    pid = next(e["pid"] for e in ev if e["phase"] == "local_enter")
    p_start = first(ev, "local_process") or first(ev, "local_enter")
    loop = loop_phases(ev, pid)
    row = {"wall": first(ev, "local_exit") - p_start,
           "imports": first(ev, "local_imported") - p_start,
           "setup": first(ev, "setup_done") - first(ev, "local_imported"),
           "steps": loop["steps"], "eval": loop["eval"], "report": loop["report"],
           "epochs": loop["epochs"]}
    row["fixed"] = row["wall"] - row["steps"] - row["eval"]
    return row


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def sweep_summary(res: dict, rows: list[dict]) -> dict:
    done = [r for r in rows if not r.get("incomplete")]
    steps = union_seconds([iv for r in rows for iv in r.get("_intervals", [])])
    wall = res["t1"] - res["t0"]
    first_start = min((r["t_start"] for r in done), default=float("nan"))
    last_end = max((r["t_end"] for r in done), default=float("nan"))
    return {"rc": res["rc"], "wall": wall, "trials": len(rows), "completed": len(done),
            "steps": steps, "steps_fraction": steps / wall if wall else float("nan"),
            "before_first_trial": first_start - res["t0"], "after_last_trial": res["t1"] - last_end,
            "epochs": sum(r["epochs"] for r in done)}


def steps_share_ceiling(steps: float, cpu_s: float, cores: int) -> float:
    """The most `steps` could be of the wall for this much CPU work: the sweep's processes used
    `cpu_s` CPU-seconds (steps included), so even packed perfectly on `cores` cores its wall is
    >= cpu_s / cores. Only less CPU work — not overlap — raises it."""
    return steps * cores / cpu_s if cpu_s > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def median(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and r[key] == r[key]]
    return statistics.median(vals) if vals else float("nan")


def fmt(v: float) -> str:
    return "—" if v != v else f"{v:.1f}"


def table(results: list[dict]) -> str:
    head = "| case | workers | trials | " + " | ".join(COLUMNS) + " | CPU busy at start |"
    lines = [head, "|" + "---|" * 3 + "---:|" * (len(COLUMNS) + 1)]
    for r in results:
        rows = r["trials"]
        cells = [fmt(median(rows, c)) for c in COLUMNS]
        busy = median(rows, "cpu_startup")
        cells.append("—" if busy != busy else f"{100 * busy:.0f} %")
        lines.append(f"| {r['case']} | {r['workers'] or 'as in space'} | {len(rows)} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_lines(results: list[dict]) -> str:
    lines = ["| case | workers | sweep wall | before 1st trial | after last | steps | "
             "steps / wall | CPU s, all processes | steps / wall at most (that CPU on "
             f"{os.cpu_count()} cores) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s = r.get("sweep")
        if s:
            cpu = s.get("cpu_s", float("nan"))
            lines.append(f"| {r['case']} | {r['workers'] or 'as in space'} | {s['wall']:.1f} | "
                         f"{s['before_first_trial']:.1f} | {s['after_last_trial']:.1f} | "
                         f"{s['steps']:.1f} | {100 * s['steps_fraction']:.1f} % | {fmt(cpu)} | "
                         f"{fmt(100 * s.get('steps_ceiling', float('nan')))} % |")
    return "\n".join(lines)


# Ray processes that exist once per sweep (the rest are started for every trial)
PER_SWEEP = ("raylet", "gcs_server", "run.py", "dashboard.py", "agent_main.py", "log_monitor.py",
             "monitor.py", "runtime_env_agent", "AutoscalingCoordinator",
             "_AutoscalingCoordinatorActor", "IDLE", "DashboardAgent", "RuntimeEnvAgent")


def cpu_lines(results: list[dict]) -> str:
    """CPU seconds by process role, per trial (roles started per trial) or per sweep."""
    cases = [r for r in results if r.get("sweeps")]
    if not cases:
        return ""
    kinds: dict[str, float] = {}
    for r in cases:
        for sw in r["sweeps"]:
            for k, v in sw.get("cpu_by_process", {}).items():
                kinds[k] = kinds.get(k, 0.0) + v["cpu_s"]
    order = sorted(kinds, key=lambda k: -kinds[k])
    head = "| process (CPU s, procs) | " + " | ".join(
        f"{r['case']} ×{r['workers'] or '—'}" for r in cases) + " |"
    lines = [head, "|---|" + "---:|" * len(cases)]
    for kind in order:
        cells = []
        for r in cases:
            cpu = procs = 0.0
            trials = sum(sw["completed"] for sw in r["sweeps"]) or 1
            for sw in r["sweeps"]:
                v = sw.get("cpu_by_process", {}).get(kind)
                if v:
                    cpu, procs = cpu + v["cpu_s"], procs + v["processes"]
            per_sweep = kind in PER_SWEEP or kind.startswith("ray-dashboard-")
            scale = len(r["sweeps"]) if per_sweep else trials
            cells.append(f"{cpu / scale:.1f} ({procs / scale:.1f})" if procs else "—")
        unit = ("per sweep" if kind in PER_SWEEP or kind.startswith("ray-dashboard-")
                else "per trial")
        lines.append(f"| {kind} ({unit}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def strip_private(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: strip_private(v) for k, v in obj.items() if not k.startswith("_")
                and k != "events"}
    if isinstance(obj, list):
        return [strip_private(v) for v in obj]
    return obj


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="trivial,ten_lm,saliency")
    p.add_argument("--workers", default="1,2", help="workers per trial, comma-separated")
    p.add_argument("--trials", type=int, default=3, help="trials per sweep (smoke); the first "
                   "of a sweep also starts Ray's once-per-cluster actors")
    p.add_argument("--repeats", type=int, default=1, help="sweeps per case")
    p.add_argument("--no-local", action="store_true", help="skip the LocalSession baseline")
    p.add_argument("--sweep", help="run this shipped space as a user would (no --smoke)")
    p.add_argument("--env", action="append", default=[],
                   help="KEY=VALUE for the sweep process (A/B of Ray settings)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: the space's)")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--keep", action="store_true", help="keep the work directories")
    p.add_argument("--json", help="write all numbers here")
    p.add_argument("--_local", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._local:
        local_main(args._local)
        return 0

    env = dict(kv.split("=", 1) for kv in args.env)
    results = []
    started = time.time()
    if args.sweep:
        plan = [(args.sweep, None)]
    else:
        plan = [(c, int(w)) for c in args.cases.split(",") for w in args.workers.split(",")]
    for case, workers in plan:
        case_result: dict[str, Any] = {"case": case, "workers": workers, "trials": [],
                                       "sweeps": []}
        for rep in range(args.repeats):
            work = tempfile.mkdtemp(prefix=f"so_{case.replace('/', '_')}_", dir="/tmp")
            try:
                space = bench_space(case, work, full=bool(args.sweep))
                res = run_sweep(space, work, trials=None if args.sweep else args.trials,
                                workers=workers, smoke=not args.sweep, env=env,
                                timeout=args.timeout, max_concurrent=args.max_concurrent)
                rows = trials_of(res["events"])
                for r in rows:
                    if not r.get("incomplete"):
                        # machine-wide CPU use while the trial started (trial start -> its
                        # first training step) and between trials
                        r["cpu_startup"] = res["cpu"].busy(r["t_start"], r["t_first_step"])
                        if r.get("gap") is not None:
                            r["cpu_gap"] = res["cpu"].busy(r["t_end"], r["t_end"] + r["gap"])
                summary = sweep_summary(res, rows)
                case_result["trials"] += [r for r in rows if not r.get("incomplete")]
                summary["cpu_by_process"] = res["cpu"].cpu_by_kind()
                summary["cpu_s"] = sum(v["cpu_s"] for v in summary["cpu_by_process"].values())
                summary["steps_ceiling"] = steps_share_ceiling(summary["steps"],
                                                               summary["cpu_s"], os.cpu_count())
                if args.json:  # the raw events, to re-read a run without re-running it
                    raw = f"{os.path.splitext(args.json)[0]}.{case_result['case']}" \
                          f"{'' if workers is None else f'x{workers}'}.r{rep}.timeline.jsonl"
                    with open(raw, "w") as f:
                        f.write(json.dumps({"phase": "cli", "t0": res["t0"], "t1": res["t1"],
                                            "rc": res["rc"]}) + "\n")
                        f.writelines(json.dumps(e) + "\n" for e in res["events"])
                case_result["sweeps"].append(summary)
                case_result["sweep"] = summary
                print(f"{case} x{workers} rep {rep}: rc={res['rc']} wall {summary['wall']:.1f} s, "
                      f"{summary['completed']}/{summary['trials']} trials, steps "
                      f"{100 * summary['steps_fraction']:.1f} % of wall", flush=True)
                if res["rc"] != 0:
                    with open(os.path.join(work, "cli.log")) as f:
                        print(f.read()[-3000:], file=sys.stderr)
            finally:
                if not args.keep:
                    shutil.rmtree(work, ignore_errors=True)
                else:
                    print("kept", work)
        results.append(case_result)

    local = []
    if not args.no_local and not args.sweep:
        for case in args.cases.split(","):
            work = tempfile.mkdtemp(prefix="so_local_", dir="/tmp")
            try:
                space = bench_space(case, work, full=False)
                rows = [local_row(run_local(space, work)) for _ in range(args.repeats)]
                local.append({"case": case, "workers": "local", "trials": rows})
            finally:
                shutil.rmtree(work, ignore_errors=True)

    print()
    print(table(results + local))
    print()
    print(sweep_lines(results))
    print()
    print(cpu_lines(results))
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"benchmark {time.time() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(strip_private({"env": env, "results": results, "local": local,
                                     "argv": sys.argv[1:]}), f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
