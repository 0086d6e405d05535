"""The end of a sweep: a ranked table, results.csv and best_config.yaml."""
from __future__ import annotations

import json
import math
import os
import statistics
from typing import Any, Mapping, Optional, Sequence

import pandas as pd
import yaml

from sweeps.decision import Verdict, criterion_rule, format_verdict_table, within_noise
from sweeps.keys import BASELINE_TAG, CONFIRM_OF, DIVERGED, EPOCH
from workloads.contract import SEED_KNOB
from sweeps.space import Space
from workloads.knobs import format_knob

OUTCOMES = ("finished", "pruned", "diverged", "error")


def trial_outcome(last: Mapping[str, Any], epochs: int, errored: bool = False) -> str:
    if errored:
        return "error"
    if float(last.get(DIVERGED, 0.0)) >= 1.0:
        return "diverged"
    if int(last.get(EPOCH, 0)) >= epochs:
        return "finished"
    return "pruned"


def finished_baseline(search: Sequence[Mapping[str, Any]], space: Space) -> list[Mapping]:
    """The search's baseline trial if it ran every epoch ([] otherwise): the reference of the
    search trials (same seed and data as they; the confirmation's baseline is on fresh data)."""
    return [t for t in search if t["config"].get(BASELINE_TAG) and trial_outcome(
        t.get("metrics") or {}, space.epochs(), bool(t.get("error"))) == "finished"]


def _score(value: Any, goal: str) -> float:
    """Larger is better; missing or non-finite values rank last."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return -math.inf
    if not math.isfinite(v):
        return -math.inf
    return v if goal == "maximize" else -v


def _pareto_rank(scores: list[tuple[float, ...]]) -> list[int]:
    """0 for the non-dominated front, 1 for the next front, ... (all scores: larger is better)."""
    ranks = [-1] * len(scores)
    remaining = set(range(len(scores)))
    front = 0
    while remaining:
        current = {i for i in remaining
                   if not any(all(a >= b for a, b in zip(scores[j], scores[i]))
                              and scores[j] != scores[i] for j in remaining)}
        for i in current:
            ranks[i] = front
        remaining -= current
        front += 1
    return ranks


def decision_metrics(space: Space) -> list[str]:
    """The objectives, then every metric a decision criterion names, then the metric the
    finalists are selected by (if the space names one)."""
    names = [o.name for o in space.objectives]
    if space.decision is not None:
        names += [c.metric for c in space.decision.criteria if c.metric not in names]
    by = space.confirm.select_by if space.confirm is not None else None
    return names + ([by] if by and by not in names else [])


def seed_spread(confirm_runs: Sequence[Mapping[str, Any]], metrics: Sequence[str],
                epochs: int) -> dict[str, float]:
    """Seed noise of a trial-vs-baseline difference: the sd over confirmation seeds of the
    paired difference finalist − baseline (same seed), pooled over finalists (NaN if no
    finalist has 2 comparable seeds). Only runs that ran all `epochs` without diverging count,
    as in the verdict (sweeps.confirm.per_seed_metrics): a run cut short holds an earlier
    epoch's values. Search trials share the baseline's seed, so their
    single-seed Δ is a paired difference too: this is the yardstick for it. With a data seed
    the confirm pairs also differ in their data draw, so the sd also holds how the effect
    varies between draws, which the search's same-data Δ do not: wider on average (not for
    every draw), i.e. cautious."""
    by: dict[str, dict[int, Mapping]] = {}
    for r in confirm_runs:
        if trial_outcome(r.get("metrics") or {}, epochs, bool(r.get("error"))) == "finished":
            by.setdefault(str(r["config"].get(CONFIRM_OF)), {})[
                int(r["config"].get(SEED_KNOB, -1))] = r["metrics"]
    base = by.pop("baseline", {})
    spread = {}
    for m in metrics:
        variances = []
        for runs in by.values():
            diffs = [_number(runs[s].get(m)) - _number(base[s].get(m))
                     for s in runs if s in base]
            diffs = [d for d in diffs if math.isfinite(d)]
            if len(diffs) > 1:
                variances.append(statistics.variance(diffs))
        spread[m] = math.sqrt(sum(variances) / len(variances)) if variances else math.nan
    return spread


def results_table(space: Space, trials: list[dict],
                  confirm_runs: Sequence[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """One row per search trial, best first (`trials`: dicts with trial_id, config, metrics,
    error), with every decision metric and its difference from the search's baseline trial
    (`Δ metric`, oriented: positive = better; a trial that stopped early — pruned, errored —
    against the baseline at its own last epoch, from the baseline's history). With
    confirmation runs, a difference smaller than the sd of finalist − baseline over the
    confirmation seeds (`seed_spread`) is marked in `within_noise` (single-seed trials; an
    unmarked Δ is not thereby a real effect)."""
    epochs = space.epochs()
    searched = [p.name for p in space.parameters]
    shown_metrics = decision_metrics(space)
    rows = []
    for t in trials:
        metrics, config = t.get("metrics") or {}, t.get("config") or {}
        row = {"trial_id": t["trial_id"],
               "outcome": trial_outcome(metrics, epochs, bool(t.get("error"))),
               "baseline": bool(config.get(BASELINE_TAG, False))}
        values = _baseline_values(space) if row["baseline"] else config
        for name in searched:
            row[name] = _cell(values.get(name))
        for name in shown_metrics:
            row[name] = _number(metrics.get(name))
        row["epochs"] = int(metrics.get(EPOCH, 0))
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    goals = dict(space.get_workload().metrics)
    # the reference is the baseline trial that ran every epoch (a pruned one is not comparable)
    base = df[df["baseline"] & (df["outcome"] == "finished")]
    spread = seed_spread(confirm_runs, shown_metrics, space.epochs())
    # the baseline's value at each epoch: a pruned trial's last value is compared with it
    base_id = base["trial_id"].iloc[0] if not base.empty else None
    base_at = {int(h.get(EPOCH, 0)): h for t in trials if t["trial_id"] == base_id
               for h in t.get("history") or []}
    noisy = [[] for _ in range(len(df))]
    for name in shown_metrics:
        final = float(base[name].iloc[0]) if not base.empty else math.nan
        refs = [final if o == "finished" else _number(base_at.get(e, {}).get(name))
                for e, o in zip(df["epochs"], df["outcome"])]
        sign = 1.0 if goals.get(name, "maximize") == "maximize" else -1.0
        df[f"Δ {name}"] = [sign * (v - ref) + 0.0  # + 0.0: no "-0"
                           for v, ref in zip(df[name], refs)]
        for i, d in enumerate(df[f"Δ {name}"]):
            if not df["baseline"].iloc[i] and within_noise(d, spread[name]):
                noisy[i].append(name)
    if confirm_runs:
        df["within_noise"] = [",".join(n) for n in noisy]
    scores = [tuple(_score(r[o.name], o.goal) for o in space.objectives) for r in rows]
    # Pareto fronts among the trials that ran every epoch; the others rank after them anyway
    finished = [i for i, r in enumerate(rows) if r["outcome"] == "finished"]
    fronts = [len(rows)] * len(rows)
    if space.multi_objective:
        for i, f in zip(finished, _pareto_rank([scores[i] for i in finished])):
            fronts[i] = f
    df["pareto_front"] = fronts if space.multi_objective else 0
    df["_primary"] = [s[0] for s in scores]
    # Trials that ran every epoch first: a pruned trial's value is from an earlier epoch and
    # not comparable (a model can score higher mid-training than at the end).
    df["_stage"] = [OUTCOMES.index(o) for o in df["outcome"]]
    df = df.sort_values(["_stage", "pareto_front", "_primary"], ascending=[True, True, False],
                        kind="stable")
    df = df.drop(columns=["_primary", "_stage"] + ([] if space.multi_objective
                                                   else ["pareto_front"]))
    df.insert(0, "rank", range(1, len(df) + 1))
    return df.reset_index(drop=True)


def best_trial(df: pd.DataFrame, space: Space) -> Optional[pd.Series]:
    """The best trial that ran every epoch (None if none did)."""
    if df.empty:
        return None
    usable = df[[o == "finished" and math.isfinite(_score(v, space.primary.goal))
                 for o, v in zip(df["outcome"], df[space.primary.name])]]
    return None if usable.empty else usable.iloc[0]


def write_outputs(run_dir: str, space: Space, df: pd.DataFrame,
                  best_knobs: Optional[Mapping[str, Any]],
                  verdict: Optional[Verdict] = None, best_is_baseline: bool = False) -> list[str]:
    """results.csv, best_config.yaml and verdict.json, written atomically (tmp + rename);
    returns the paths."""
    paths = []
    if verdict is not None:
        path = os.path.join(run_dir, "verdict.json")
        with open(path + ".tmp", "w") as f:
            json.dump(verdict.to_dict(), f, indent=2)
        os.replace(path + ".tmp", path)
        paths.append(path)
    csv_path = os.path.join(run_dir, "results.csv")
    df.to_csv(csv_path + ".tmp", index=False)
    os.replace(csv_path + ".tmp", csv_path)
    paths.append(csv_path)
    if best_knobs is not None:
        best_path = os.path.join(run_dir, "best_config.yaml")
        doc = {"workload": space.workload, "knobs": _plain(best_knobs)}
        with open(best_path + ".tmp", "w") as f:
            f.write(f"# best trial of {space.stem} by {space.primary.name} "
                    f"({space.primary.goal}); every knob, so the run can be reproduced\n")
            if best_is_baseline:
                f.write("# it is the BASELINE: no searched trial beat it on this metric (see "
                        "report.md for the confirmation's verdict)\n")
            yaml.safe_dump(doc, f, sort_keys=True)
        os.replace(best_path + ".tmp", best_path)
        paths.append(best_path)
    return paths


def _baseline_values(space: Space) -> dict[str, Any]:
    """What the baseline trial ran with for each searched knob: its own values, else the
    workload/fixed defaults, leaving out conditional knobs whose condition does not hold."""
    knobs = space.trial_config({k: v for k, v in (space.baseline or {}).items()})
    return {p.name: knobs[p.name] for p in space.parameters
            if all(format_knob(knobs[k]) == format_knob(v) for k, v in p.when.items())}


def _cell(value: Any) -> Any:
    """Numbers stay numbers (sortable, formatted in the table); lists read "1,2,4"."""
    if value is None:
        return ""
    return format_knob(value) if isinstance(value, (list, tuple)) else value


def _plain(knobs: Mapping[str, Any]) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in knobs.items()}


def format_table(df: pd.DataFrame, max_rows: int = 20) -> str:
    if df.empty:
        return "(no trials)"
    with pd.option_context("display.max_columns", 50, "display.width", 160,
                           "display.float_format", "{:.4g}".format):
        return df.head(max_rows).to_string(index=False)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _markdown(df: pd.DataFrame, max_rows: int = 50) -> str:
    """A markdown table (no extra dependency): numbers to 4 significant digits."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "—" if not math.isfinite(v) else f"{v:.4g}"
        return str(v).replace("|", "\\|")
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in df.head(max_rows).itertuples(index=False)]
    return "\n".join(lines)


def write_report(run_dir: str, name: str, space: Space, df: pd.DataFrame,
                 verdict: Optional[Verdict], plots: Sequence[str],
                 confirm_runs: Sequence[Mapping[str, Any]] = (),
                 trials: Sequence[Mapping[str, Any]] = (),
                 second_test: Optional[str] = None) -> str:
    """report.md: the verdict, the search table with baseline deltas, the plots, the method.
    `second_test`: how to report a verdict on seeds the command line changed
    (sweeps.confirm.second_test_note)."""
    metrics = decision_metrics(space)
    lines = [f"# Sweep `{name}` — workload `{space.workload}`", "",
             f"Search: {space.method} over {', '.join(p.name for p in space.parameters)}; "
             f"objective {space.primary.name} ({space.primary.goal}); {len(df)} trials of one "
             f"seed each, the baseline first.", ""]
    if verdict is not None:
        from sweeps.confirm import follow_up
        advice = follow_up(space, verdict)
        picture = [p for p in plots if os.path.basename(p) == "verdict.png"]
        lines += ["## Verdict (confirmation runs, paired by seed)", "",
                  format_verdict_table(verdict), ""]
        lines += ["![verdict.png](verdict.png)", ""] if picture else []
        lines += [finalists_rule(space, len(verdict.finalists)), "", resolution(verdict), ""]
        lines += [f"**Seeds**: {second_test}", ""] if second_test else []
        lines += [f"Next: {advice}.", ""] if advice else []
    elif space.confirm is None:
        lines += ["## Verdict", "", "No confirmation stage (`confirm:` in the space file): the "
                  "ranking below is of single-seed runs, and the best of many noisy trials "
                  "overstates its advantage (winner's curse).", ""]
    lines += metric_glossary(space, metrics)
    spread = seed_spread(confirm_runs, metrics, space.epochs())
    lines += ["## Search trials", "",
              "Δ = difference from the search's baseline trial in the metric's own unit (not "
              "%), oriented so that positive = better; trials share the baseline's seed, so Δ "
              "is a paired difference. A pruned trial's values are from its last epoch "
              "(`epochs`), and its Δ is against the baseline at that same epoch." + (
                  " Its noise — the sd over confirmation seeds" + (" and data draws"
                  if space.get_workload().data_seed_knob else "") + " of finalist − baseline, "
                  "pooled over finalists: " + ", ".join(
                      f"{m} {spread[m]:.3g}" for m in metrics if math.isfinite(spread[m]))
                  + "; a |Δ| below it is listed in `within_noise` (one sd: a Δ above it "
                    "can still be noise — only the verdict above tests it)." if confirm_runs
                  else ""),
              "", _markdown(df), ""]
    agreement = rung_agreement(space, trials)
    if agreement:
        lines += ["## Is early stopping safe here?", "",
                  f"Kendall τ between each ASHA rung's ranking by {space.primary.name} and the "
                  "final ranking, over the trials that ran every epoch (1 = same order; below "
                  "0.5 is flagged). It checks the objective's ranking only, and it cannot see "
                  "the trials ASHA stopped — where they stood at the rung is listed:", ""]
        lines += [(f"- epoch {a['rung']}: τ = {a['tau']:.2f} over {a['n']} trials"
                   if math.isfinite(a["tau"]) else
                   f"- epoch {a['rung']}: fewer than 3 trials ran every epoch, no τ")
                  + "".join(f"; stopped there: {p['trial_id']} (rank {p['rank']} of {p['of']})"
                            for p in a.get("pruned", ()))
                  for a in agreement]
        lines += [f"- **warning**: {w}" for w in rung_warning(agreement)] + [""]
    shown = [os.path.basename(p) for p in plots if os.path.basename(p) != "verdict.png"
             or verdict is None]
    if shown:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in shown] + [""]
    path = os.path.join(run_dir, "report.md")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(path + ".tmp", path)
    return path


def finalists_rule(space: Space, picked: int) -> str:
    """How the `picked` finalists were chosen, in words (sweeps.confirm.select_finalists)."""
    c = space.confirm
    if c.given:
        return (f"Finalists: the {len(c.given)} that {os.path.basename(c.given_from)} selected "
                "for its confirmation (--confirm-knobs-from), with the same knobs on this arm; "
                "this sweep's search did not choose them.")
    many = f"{picked} of at most {c.finalists}" if picked < c.finalists else str(picked)
    if c.select_by is None:
        order = (space.primary.name if len(space.objectives) == 1 else
                 f"Pareto front over {', '.join(o.name for o in space.objectives)}, then "
                 f"{space.primary.name}")
        return f"Finalists: the {many} best finished search trials by {order} (one seed each)."
    goal = dict(space.get_workload().metrics)[c.select_by]
    margins = [f"{r.metric} {criterion_rule(r.kind, r.margin, r.relative)}"
               for r in (space.decision.criteria if space.decision else ())
               if r.kind == "non_inferiority"]
    return (f"Finalists: among the finished search trials within "
            f"{' and '.join(margins) or 'every margin'} of the search's baseline trial (one "
            f"seed), the {many} with the {'lowest' if goal == 'minimize' else 'highest'} "
            f"{c.select_by}. The search itself steered by {space.primary.name}.")


def resolution(verdict: Verdict) -> str:
    """What this design can settle, in sd of a criterion's paired differences: Holm's first
    step (alpha / 2m one-sided, decide() tests both directions) and its last (alpha / 2)."""
    from scipy import stats
    m = len(verdict.finalists) * len(verdict.finalists[0].criteria)
    n = verdict.seeds
    if n < 2:
        return ""
    alpha = 1.0 - verdict.confidence
    first, last = (float(stats.t.ppf(1.0 - alpha / (2 * k), n - 1)) / math.sqrt(n)
                   for k in (m, 1))
    return (f"What {n} seeds can settle: with {m} tests, nothing is settled (✓ or ✗) until some "
            f"criterion's mean improvement is at least {first:.1f} sd of its paired "
            f"differences away from its bar; each one settled lowers the bar for the rest, "
            f"down to {last:.1f} sd for the last. Smaller effects stay unsettled however real.")


def metric_glossary(space: Space, metrics: Sequence[str]) -> list[str]:
    """report.md's "Metrics" section: unit and meaning of each metric the tables show, from
    the workload's `metric_docs` (none, and no section, for a workload without them)."""
    docs = space.get_workload().metric_docs
    rows = [f"- `{m}`" + (f" [{docs[m][0]}]" if docs[m][0] else "") + f": {docs[m][1]}"
            for m in metrics if m in docs]
    return ["## Metrics", ""] + rows + [""] if rows else []


def rung_agreement(space: Space, trials: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Is early stopping safe here? For each ASHA rung (an epoch where trials were compared),
    Kendall's τ between the ranking at that epoch and the final ranking, over the trials that
    ran every epoch (only they have both). [{rung, n, tau}]; empty without early stopping."""
    from scipy.stats import kendalltau
    epochs = space.epochs()
    rungs = space.early_stop.rungs(epochs) if space.early_stop else []
    o = space.primary
    out = []
    for rung in rungs:
        pairs, at_rung, stopped = [], [], []
        for t in trials:
            m = t.get("metrics") or {}
            at = {int(h.get(EPOCH, 0)): h.get(o.name) for h in t.get("history") or []}
            early, final = _number(at.get(rung)), _number(m.get(o.name))
            if math.isfinite(early):
                at_rung.append(_score(early, o.goal))
            outcome = trial_outcome(m, epochs, bool(t.get("error")))
            if outcome == "pruned" and _number(m.get(EPOCH)) == rung \
                    and math.isfinite(early):  # stopped at this rung, not one it passed
                stopped.append((str(t.get("trial_id")), _score(early, o.goal)))
            if outcome == "finished" and math.isfinite(early) and math.isfinite(final):
                pairs.append((early, final))
        tau = kendalltau(*zip(*pairs)).statistic if len(pairs) >= 3 else math.nan
        # where each trial stopped at this rung stood there (1 = best): τ cannot cover it
        pruned = [{"trial_id": tid, "rank": 1 + sum(v > x for v in at_rung), "of": len(at_rung)}
                  for tid, x in stopped]
        out.append({"rung": rung, "n": len(pairs), "tau": float(tau), "pruned": pruned})
    return out


def rung_warning(agreement: Sequence[Mapping[str, Any]], threshold: float = 0.5) -> list[str]:
    """One line per rung whose ranking disagreed with the final one (τ below `threshold`)."""
    return [f"ASHA's epoch-{a['rung']} ranking disagreed with the final ranking (Kendall τ = "
            f"{a['tau']:.2f} over {a['n']} trials that ran every epoch): early stopping may have "
            f"dropped the answer; consider a larger grace period (early_terminate.min_iter)"
            for a in agreement if math.isfinite(a["tau"]) and a["tau"] < threshold]
