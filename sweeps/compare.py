"""Between-arm comparison: does a regularizer improve more in one sweep (arm A) than in another
(arm B)? E.g. the blurred-prior saliency arm against its control arm, where the model is handed
the sharp prior: a regularizer that removes positional bias should help more where there is
bias to remove, and a control arm only becomes a test when the two effects are compared.

Each sweep's verdict already holds, per finalist, criterion and confirmation seed, the paired
improvement over its own baseline (verdict.json `diffs`, aligned with sweep.json's confirmation
seeds). For a finalist with the same knobs in both sweeps, seed s gives one difference of
differences

    e_s = (A's finalist - A's baseline on seed s) - (B's finalist - B's baseline on seed s)

and the test is a paired t on e_s (H0: the same improvement in both arms; two-sided), Holm over
the compared (finalist, criterion) pairs, as sweeps.decision does within a sweep. Seeds pair
the arms' model seeds (and, for a workload with a data seed, their data seeds when the arms
start from the same ones); pairing is only a variance reduction, so the test stays valid
either way. A seed without a run in either arm is dropped and counted; a failed seed (a
diverged run, or a zero baseline under a relative criterion) is not a missing value (the
verdict counts it against the finalist), so a criterion with one in either arm is listed, not
tested — it stays in the Holm family at p = 1, so the family does not depend on the data.

This is a separate test from each sweep's own verdict. If the arms or the comparison were
chosen after seeing their verdicts, say so when you report it.

    python sweeps/compare.py RUN_DIR_A RUN_DIR_B [--metric NAME ...] [--confidence 0.95]
                             [--json PATH]

Exit codes: 0 compared, 2 bad input (not a finished sweep with a confirmation stage, different
workloads, no finalist with the same knobs in both, no shared seed, an unwritable --json), 1
anything else.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from sweeps.confirm import seed_span  # noqa: E402
from sweeps.decision import (SEEDS_CAP, estimate_seeds_needed,  # noqa: E402
                             format_improvement, format_knobs, holm, level_range,
                             paired_t_interval, strict_json)
from sweeps.errors import BadInput, clip  # noqa: E402
from sweeps.space import RULES, Space  # noqa: E402
from sweeps.sweep import STATE_FILE, Sweep  # noqa: E402
from workloads.contract import SEED_KNOB  # noqa: E402

VERDICT_FILE = "verdict.json"
MAX_VERDICT_BYTES = 10_000_000
# A per-seed improvement beyond this is no measurement (and its differences would overflow).
MAX_IMPROVEMENT = 1e100
# Float knob values closer than this (relative) are the same setting: a value written to JSON
# and read back is exact, a hand-edited one may not be.
_SAME_KNOB = 1e-9
_ID = 40       # characters of a trial id or knob value shown
_FAILED, _MISSING = "failed", "missing"


@dataclass(frozen=True)
class Arm:
    """One sweep as the comparison sees it."""
    run_dir: str
    label: str                      # the run directory's name (space file)
    parent_run_id: str
    space: Space
    seeds: tuple[int, ...]          # confirmation seeds, aligned with every per-seed list
    finalists: tuple[dict, ...]     # verdict.json's finalists: trial_id, knobs, criteria
    baseline: dict                  # verdict.json's per-seed baseline values ({} if older)


@dataclass(frozen=True)
class ArmDifference:
    metric: str
    relative: bool                  # improvements as a fraction of each arm's own baseline
    knobs: dict
    trial_a: str
    trial_b: str
    effect_a: float                 # mean improvement over its baseline, on the compared seeds
    effect_b: float
    baseline_a: float               # mean baseline value on the compared seeds (NaN: unknown)
    baseline_b: float
    mean: float                     # mean of e_s = A's improvement - B's, per seed
    sd: float
    ci_low: float                   # paired t at ci_level (Holm's level for this test)
    ci_high: float
    ci_level: float                 # NaN when not tested
    p: float                        # two-sided, raw (1 when not tested)
    p_adjusted: float               # Holm over all rows
    n: int                          # seeds compared
    n_missing: int                  # shared seeds without a run in an arm (dropped)
    failed_a: int                   # shared seeds failed in A / in B (diverged; see above)
    failed_b: int
    positive_seeds: int             # seeds with e_s > 0
    status: str                     # see _status
    # "no difference shown": shared seeds at which the observed difference would just be shown
    # (even odds if it is the true one; judged at Holm's strictest step); None otherwise
    seeds_needed: Optional[int] = None


@dataclass(frozen=True)
class Comparison:
    arm_a: str
    arm_b: str
    confidence: float
    seeds: tuple[int, ...]          # the shared confirmation seeds
    data_paired: bool               # the shared seeds also pair the arms' data draws
    restricted_to: tuple[str, ...]  # --metric: the family's criteria (() = every one)
    left_out: tuple[str, ...]       # criteria --metric kept out of the family
    knob_differences: tuple[str, ...]  # "knob: A value vs B value" of the arms' baselines
    differences: tuple[ArmDifference, ...]
    unmatched: tuple[str, ...]      # finalists (either arm) with no same-knob partner
    not_compared: tuple[str, ...]   # criteria of one arm the other does not judge alike

    def to_dict(self) -> dict:
        """JSON-ready: non-finite numbers become None."""
        return strict_json(asdict(self))


# --- reading a sweep ------------------------------------------------------------------------

def load_arm(run_dir: str, flag: str) -> Arm:
    """A finished sweep with a confirmation stage; BadInput (one line, naming the file) if not."""
    where = f"{flag}: {clip(run_dir, 200)}"
    # the space and overrides it ran with, and its sweep.json (BadInput if there is none)
    sweep = Sweep.resume_from(run_dir, flag=flag)
    state = sweep.saved_state
    if not state.get("confirm"):
        raise BadInput(f"{where}: the sweep has no confirmation stage ({STATE_FILE} has no "
                       "confirm seeds); compare needs each arm's confirmation runs")
    seeds = tuple(state["confirm"]["seeds"])
    if not seeds or len(set(seeds)) != len(seeds):
        raise BadInput(f"{where}/{STATE_FILE}: confirm seeds must be distinct and at least one "
                       f"(got {clip(list(seeds), 100)})")
    vpath = f"{where}/{VERDICT_FILE}"
    verdict = _read_verdict(os.path.join(run_dir, VERDICT_FILE), vpath)
    ids = sorted(f["trial_id"] for f in verdict["finalists"])
    if ids != sorted(str(f["trial_id"]) for f in state["confirm"]["finalists"]):
        raise BadInput(f"{vpath}: its finalists are not the ones {STATE_FILE} confirmed: the "
                       "two files are from different runs")
    for f in verdict["finalists"]:
        for c in f["criteria"]:
            c["diffs"] = _per_seed(c["diffs"], len(seeds), f"{vpath}: finalist "
                                   f"{clip(f['trial_id'], _ID)} {clip(c['metric'], _ID)} diffs")
    baseline = verdict.get("baseline") or {}
    if not isinstance(baseline, dict):
        raise BadInput(f"{vpath}: baseline must map metric -> per-seed values")
    baseline = {m: _per_seed(v, len(seeds), f"{vpath}: baseline {clip(m, _ID)}")
                for m, v in baseline.items()}
    name = os.path.basename(os.path.realpath(run_dir))
    label = f"{name} ({os.path.basename(sweep.space.path or '?')})"
    return Arm(os.path.realpath(run_dir), label, state["parent_run_id"], sweep.space, seeds,
               tuple(verdict["finalists"]), baseline)


def _read_verdict(path: str, where: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_VERDICT_BYTES + 1)
    except OSError as e:
        raise BadInput(f"{where}: cannot read ({e.strerror}); the sweep writes it when its "
                       "confirmation stage has finished") from None
    if len(data) > MAX_VERDICT_BYTES:
        raise BadInput(f"{where}: over {MAX_VERDICT_BYTES} bytes")
    try:
        verdict = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise BadInput(f"{where}: not JSON ({clip(e, 100)})") from None
    finalists = verdict.get("finalists") if isinstance(verdict, dict) else None
    ok = isinstance(finalists, list) and finalists and all(
        isinstance(f, dict) and isinstance(f.get("trial_id"), str)
        and isinstance(f.get("knobs"), dict) and isinstance(f.get("criteria"), list)
        and all(isinstance(c, dict) and isinstance(c.get("metric"), str)
                and isinstance(c.get("relative"), bool) and c.get("goal") in ("maximize",
                                                                             "minimize")
                for c in f["criteria"]) for f in finalists)
    if not ok:
        raise BadInput(f"{where}: not a verdict (needs finalists with trial_id, knobs and "
                       "criteria with metric, relative and goal)")
    cap = int(RULES["finalists"].hi)
    if (len(finalists) > cap or len({f["trial_id"] for f in finalists}) != len(finalists)
            or any(len({c["metric"] for c in f["criteria"]}) != len(f["criteria"])
                   for f in finalists)):
        raise BadInput(f"{where}: not a verdict (at most {cap} finalists, each trial id and "
                       "each finalist's criterion metrics once)")
    if not all("diffs" in c for f in finalists for c in f["criteria"]):
        raise BadInput(f"{where}: no per-seed differences (`diffs`): written by an older "
                       "version of the sweep service; redraw its report with this one")
    return verdict


def _per_seed(values: Any, n: int, where: str) -> np.ndarray:
    """verdict.json's per-seed list -> floats: a number, "failed" (diverged: -inf) or
    "missing" / null (no run: NaN); anything else, or a length other than the seeds', is
    BadInput."""
    if not isinstance(values, list) or len(values) != n:
        got = f"{len(values)} values" if isinstance(values, list) else "not a list"
        raise BadInput(f"{where}: {got} for {n} confirmation seeds in {STATE_FILE}: the two "
                       "files are from different runs")
    out = []
    for x in values:
        if x == _FAILED:
            out.append(-math.inf)
        elif x is None or x == _MISSING:
            out.append(math.nan)
        elif (isinstance(x, (int, float)) and not isinstance(x, bool)
              and abs(x) <= MAX_IMPROVEMENT):  # (an int of any size compares without overflow)
            out.append(float(x))
        else:
            raise BadInput(f"{where}: each value must be a number within ±{MAX_IMPROVEMENT:g}, "
                           f"\"{_FAILED}\" or \"{_MISSING}\" (got {clip(repr(x), 40)})")
    return np.array(out, dtype=float)


# --- the comparison -------------------------------------------------------------------------

def _same_knobs(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Same names, same types, equal values (floats to 1e-9 relative)."""
    if set(a) != set(b):
        return False
    for k, va in a.items():
        vb = b[k]
        if type(va) is not type(vb):  # "0.1" is not 0.1; True is not 1
            return False
        if isinstance(va, float):
            if not math.isclose(va, vb, rel_tol=_SAME_KNOB, abs_tol=0.0):
                return False
        elif va != vb:
            return False
    return True


def _knob_differences(a: Space, b: Space) -> dict[str, str]:
    """{knob: "A value vs B value"} for the knobs the two arms' baselines differ in (what makes
    them arms, and any confound)."""
    ka, kb = a.trial_config(a.baseline or {}), b.trial_config(b.baseline or {})
    return {k: f"{clip(ka.get(k), _ID)} vs {clip(kb.get(k), _ID)}"
            for k in sorted(set(ka) | set(kb)) if ka.get(k) != kb.get(k)}


def compare(a: Arm, b: Arm, confidence: float = 0.95,
            metrics: Optional[Sequence[str]] = None) -> Comparison:
    """Every (same-knob finalist, criterion judged alike in both arms) pair, on the shared
    seeds; `metrics` restricts the tested family to these criteria (pre-specify the question)."""
    if not 0.0 < confidence < 1.0:
        raise BadInput(f"--confidence: must be in (0, 1) (got {clip(confidence, 40)})")
    if a.run_dir == b.run_dir or a.parent_run_id == b.parent_run_id:
        raise BadInput(f"compare: A and B are the same sweep ({clip(a.run_dir, 200)})")
    if a.space.workload != b.space.workload:
        raise BadInput(f"compare: the arms run different workloads ({clip(a.space.workload, _ID)}"
                       f" vs {clip(b.space.workload, _ID)}): their metrics are not comparable")
    shared = [s for s in a.seeds if s in b.seeds]
    if not shared:
        raise BadInput(f"compare: the arms share no confirmation seed (A: "
                       f"{seed_span(a.seeds)}, B: {seed_span(b.seeds)}): run B with A's seeds "
                       "(--confirm-seeds, --confirm-seed-offset)")
    pairs = [(fa, fb) for fa in a.finalists for fb in b.finalists
             if _same_knobs(fa["knobs"], fb["knobs"])]
    matched = {id(f) for p in pairs for f in p}
    unmatched = tuple(f"{arm}: {_finalist(f)}" for arm, arm_f in (("A", a.finalists),
                                                                  ("B", b.finalists))
                      for f in arm_f if id(f) not in matched)
    if not pairs:
        raise BadInput(clip("compare: no finalist has the same knobs in both sweeps ("
                            + "; ".join(unmatched) + "): the comparison pairs the same "
                            "regularizer setting across arms"))
    judged = {c["metric"] for f in (*a.finalists, *b.finalists) for c in f["criteria"]}
    unknown = sorted(set(metrics or ()) - judged)
    if unknown:
        raise BadInput(f"--metric: {clip(', '.join(unknown), 100)} is not a criterion of either "
                       f"sweep (criteria: {clip(', '.join(sorted(judged)), 200)})")
    ia, ib = [a.seeds.index(s) for s in shared], [b.seeds.index(s) for s in shared]
    left_out = sorted(judged - set(metrics)) if metrics else []
    rows, not_compared = [], []
    for fa, fb in pairs:
        crit_b = {c["metric"]: c for c in fb["criteria"]}
        for ca in fa["criteria"]:
            if metrics and ca["metric"] not in metrics:
                continue
            cb = crit_b.get(ca["metric"])
            why = ("B does not judge it" if cb is None else
                   "relative in one arm, absolute in the other"
                   if ca["relative"] != cb["relative"] else
                   "maximized in one arm, minimized in the other"
                   if ca["goal"] != cb["goal"] else None)
            if why:
                not_compared.append(f"{clip(ca['metric'], _ID)} of A's {_finalist(fa)}: {why}")
                continue
            rows.append((fa, fb, ca, ca["diffs"][ia], cb["diffs"][ib]))
        for cb in fb["criteria"]:
            if cb["metric"] not in {c["metric"] for c in fa["criteria"]} and (
                    not metrics or cb["metric"] in metrics):
                not_compared.append(f"{clip(cb['metric'], _ID)} of B's {_finalist(fb)}: A does "
                                    "not judge it")
    if not rows:
        raise BadInput("compare: the matched finalists share no criterion judged alike ("
                       + clip("; ".join(not_compared), 300) + ")")
    tests = []
    for _, _, _, da, db in rows:
        failed = bool(np.isneginf(da).any() or np.isneginf(db).any())
        keep = np.isfinite(da) & np.isfinite(db)
        tests.append(None if failed else paired_t_interval(da[keep] - db[keep], confidence))
    # Untested rows (a failed seed) stay in the family at p = 1: the family does not depend on
    # the data, and Holm stays valid.
    two_sided = [1.0 if t is None else min(1.0, 2.0 * min(t.p_greater, t.p_less)) for t in tests]
    h = holm(two_sided, 1.0 - confidence)
    out = []
    for i, ((fa, fb, ca, da, db), t) in enumerate(zip(rows, tests)):
        keep = np.isfinite(da) & np.isfinite(db)
        e = da[keep] - db[keep]
        step = float(h.step_alpha[i])
        tested = t is not None and t.n >= 2 and t.sd != 0.0
        ci = paired_t_interval(e, 1.0 - step) if tested else None
        base_a = _mean_at(a.baseline.get(ca["metric"]), ia, keep)
        base_b = _mean_at(b.baseline.get(ca["metric"]), ib, keep)
        out.append(ArmDifference(
            ca["metric"], ca["relative"], dict(fa["knobs"]), fa["trial_id"], fb["trial_id"],
            _mean(da[keep]), _mean(db[keep]), base_a, base_b,
            t.mean if t else math.nan, t.sd if t else math.nan,
            ci.lo if ci else math.nan, ci.hi if ci else math.nan,
            1.0 - step if ci else math.nan, two_sided[i],
            float(h.adjusted[i]), int(keep.sum()),
            int((np.isnan(da) | np.isnan(db)).sum()), int(np.isneginf(da).sum()),
            int(np.isneginf(db).sum()), int((e > 0).sum()),
            _status(t, bool(h.rejected[i]), ca["relative"], da, db),
            estimate_seeds_needed(t.mean, t.sd, 0.0, n_now=t.n,
                                  alpha_one_sided=(1.0 - confidence) / (2 * len(rows)))
            if tested and not h.rejected[i] else None))
    knob_diffs = _knob_differences(a.space, b.space)
    data_knob = a.space.get_workload().data_seed_knob
    data_paired = data_knob is not None and not set(knob_diffs) & {SEED_KNOB, data_knob}
    return Comparison(a.label, b.label, confidence, tuple(shared), data_paired,
                      tuple(metrics or ()), tuple(left_out),
                      tuple(f"{k}: {v}" for k, v in knob_diffs.items()), tuple(out), unmatched,
                      tuple(not_compared))


def _status(t, rejected: bool, relative: bool, da: np.ndarray, db: np.ndarray) -> str:
    if t is None:
        arms = " and ".join(arm for arm, d in (("A", da), ("B", db)) if np.isneginf(d).any())
        return (f"not tested: a failed seed in {arms} (a diverged run, or a zero baseline of a "
                "relative criterion)")
    if t.n < 2:
        return "not tested: fewer than 2 seeds with both improvements"
    if t.sd == 0.0:
        return "not tested: the same difference on every seed (no spread)"
    if not rejected:
        return "no difference shown"
    return f"{'A' if t.mean > 0 else 'B'} improves more" + (" (relative)" if relative else "")


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else math.nan


def _mean_at(values: Optional[np.ndarray], index: Sequence[int], keep: np.ndarray) -> float:
    if values is None:
        return math.nan
    v = values[index][keep]
    return float(v.mean()) if v.size and np.isfinite(v).all() else math.nan


def _finalist(f: Mapping[str, Any]) -> str:
    knobs = {k: clip(v, _ID) if isinstance(v, str) else v for k, v in f["knobs"].items()}
    return f"{clip(f['trial_id'], _ID)} ({clip(format_knobs(knobs, ', '), 200)})"


# --- printing -------------------------------------------------------------------------------

def _num(x: float, relative: bool, points: bool = False) -> str:
    """Relative improvements are fractions of each arm's own baseline, so their difference is
    in percentage points."""
    text = format_improvement(x, relative)
    return text.replace("%", " pp") if relative and points else text


def format_comparison(c: Comparison, unit: Mapping[str, str]) -> str:
    """A markdown block a reviewer can read without the code (`unit`: metric -> unit)."""
    level = level_range([d.ci_level for d in c.differences if math.isfinite(d.ci_level)])
    m = len(c.differences)
    pairing = ("the same model and data seeds in both arms" if c.data_paired else
               "the same model seeds; the data draws are not paired")
    lines = [f"**Between arms: A = {c.arm_a}, B = {c.arm_b}**", "",
             "Per seed, (A's finalist − A's baseline) − (B's finalist − B's baseline); "
             f"paired t on {len(c.seeds)} shared confirmation seeds ({seed_span(c.seeds)}: "
             f"{pairing}), two-sided, Holm over {m} test{'s' if m > 1 else ''} at "
             f"family-wise {c.confidence:.0%}"
             + (f"; each interval at its test's Holm level ({level}), not a simultaneous band."
                if level else "."), ""]
    if c.restricted_to:
        lines += [f"Family restricted by --metric to {', '.join(c.restricted_to)}"
                  + (f"; not in it: {', '.join(c.left_out)}" if c.left_out else "")
                  + ". Valid only if chosen before seeing either arm's results.", ""]
    if c.knob_differences:
        lines += ["The arms' baselines differ in " + "; ".join(c.knob_differences)
                  + (" — more than one knob: each is a candidate cause of a difference."
                     if len(c.knob_differences) > 1 else "."), ""]
    lines += ["| finalist A / B | knobs | metric | baseline A / B | improvement in A | in B | "
              "A − B [lo, hi] | seeds A − B > 0 | result |",
              "|---|---|---|---|---:|---:|---|---:|---|"]
    for d in c.differences:
        u = f" {unit[d.metric]}" if unit.get(d.metric) else ""
        scale = " (% of each arm's baseline)" if d.relative else ""
        base = (f"{d.baseline_a:.3g} / {d.baseline_b:.3g}{u}"
                if math.isfinite(d.baseline_a) and math.isfinite(d.baseline_b) else "-")
        if math.isfinite(d.ci_level):
            diff = (f"{_num(d.mean, d.relative, True)} [{_num(d.ci_low, d.relative, True)}, "
                    f"{_num(d.ci_high, d.relative, True)}]" + ("" if d.relative else u))
        else:
            diff = "-"
        n = f"{d.positive_seeds}/{d.n}" if d.n else "-"
        notes = [f"{k} {what}" for k, what in ((d.n_missing, "without a run"),
                                               (d.failed_a, "failed in A"),
                                               (d.failed_b, "failed in B")) if k]
        if notes:
            n += f" ({', '.join(notes)})"
        effect = [(_num(x, d.relative) + ("" if d.relative else u)) if math.isfinite(x)
                  else "-" for x in (d.effect_a, d.effect_b)]
        result = d.status + (f" (~{d.seeds_needed} seeds: even odds of showing it if it is as "
                             "seen)" if d.seeds_needed else
                             f" (more than {SEEDS_CAP} seeds)" if d.status == "no difference "
                             "shown" and math.isfinite(d.ci_level) else "")
        lines.append("| " + " | ".join(_cell(x) for x in (
            f"{d.trial_a} / {d.trial_b}", format_knobs(d.knobs, ", "), d.metric + scale, base,
            *effect, diff, n, result)) + " |")
    lines += ["", "Improvement = the arm's finalist over its own baseline on the compared seeds, "
              "positive = better (also for minimized metrics); \"A improves more\" means A's "
              "improvement is the larger (or its loss the smaller). A separate test from each "
              "sweep's verdict: if the arms or this comparison were chosen after seeing the "
              "verdicts, report it as post hoc."]
    if any(d.relative for d in c.differences):
        lines[-1] += (" \"% of each arm's baseline\": relative to that arm's own baseline (pp = "
                      "percentage points), so an arm with less to remove can show the larger "
                      "relative improvement — compare the baselines.")
    if c.unmatched:
        lines += ["", "Not compared (no finalist with the same knobs in the other arm): "
                  + clip("; ".join(c.unmatched), 1000) + "."]
    if c.not_compared:
        lines += ["", "Criteria not compared: " + clip("; ".join(c.not_compared), 1000) + "."]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return clip(text, 200).replace("|", "\\|")


def _check_json_path(path: str, run_dirs: Sequence[str]) -> None:
    """--json must name a regular file (new or existing) in an existing folder, outside both
    run directories (a sweep's own files are never overwritten)."""
    real = os.path.realpath(path)
    where = f"--json: {clip(path, 200)}"
    if os.path.lexists(path) and not (os.path.isfile(path) and not os.path.islink(path)):
        raise BadInput(f"{where}: exists and is not a regular file")
    if not os.path.isdir(os.path.dirname(real)):
        raise BadInput(f"{where}: its folder does not exist")
    for run in run_dirs:
        if os.path.commonpath([real, os.path.realpath(run)]) == os.path.realpath(run):
            raise BadInput(f"{where}: inside a compared sweep's run directory; write it "
                           "elsewhere")


def _write_json(path: str, data: dict) -> None:
    """Atomically (a temporary file in the same folder, renamed); nothing left on failure."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".compare-", suffix=".json")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 is not what a user's file gets
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="sweeps/compare.py",
        description="Does a regularizer improve more in sweep A than in sweep B? (the same "
                    "finalist knobs, the shared confirmation seeds)")
    p.add_argument("run_a", help="arm A: a finished sweep's run directory")
    p.add_argument("run_b", help="arm B: another finished sweep's run directory")
    p.add_argument("--metric", action="append", metavar="NAME",
                   help="restrict the tested family to this criterion (repeatable), so the "
                        "others do not share its error budget; valid only if chosen before "
                        "seeing the results")
    p.add_argument("--confidence", type=float, default=0.95,
                   help="family-wise confidence over the comparisons (default 0.95)")
    p.add_argument("--json", metavar="PATH", help="also write the comparison as JSON here")
    args = p.parse_args(argv)
    try:
        if not 0.0 < args.confidence < 1.0:  # also nan
            raise BadInput(f"--confidence: must be in (0, 1) (got {clip(args.confidence, 40)})")
        if args.json:
            _check_json_path(args.json, (args.run_a, args.run_b))
        a, b = load_arm(args.run_a, "A"), load_arm(args.run_b, "B")
        result = compare(a, b, args.confidence, args.metric)
        if args.json:
            try:
                _write_json(args.json, result.to_dict())
            except OSError as e:
                raise BadInput(f"--json: {clip(args.json, 200)}: cannot write ({e.strerror})")
    except BadInput as e:
        print(f"error: {clip(e)}", file=sys.stderr)
        return 2
    w = a.space.get_workload()
    print(format_comparison(result, {d.metric: w.metric_unit(d.metric)
                                     for d in result.differences}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
