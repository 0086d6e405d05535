"""The confirmation stage, Ray-free: which finalists, which fresh seeds, which Tune configs, and
the verdict from the confirm runs' final metrics.

Selecting the best of many noisy single-seed trials and reporting its score is the winner's
curse. So after the search the `confirm.finalists` best finished trials and the baseline are
re-run on the same `confirm.seeds` fresh seeds (the workload's seed knob: search seed + 1, + 2,
...), as ordinary trials that are never pruned; seed i of a finalist is paired with seed i of
the baseline. A workload with a data seed knob (saliency: the synthetic draw and the
train/val split) gets a fresh one with each seed (search value + 1, + 2, ...): a finalist was
chosen for its score on the search's validation set, and re-scoring it there would carry that
selection into the verdict (a winner's curse over the data, not the model seed).
`sweeps/decision.py` turns the paired differences into GO / NO-GO / INCONCLUSIVE.
"""
from __future__ import annotations

import math
import os
import re
from typing import Any, Mapping, Optional, Sequence

import pandas as pd

from sweeps.decision import Verdict, decide, improvements
from sweeps.errors import clip
from sweeps.keys import BASELINE_TAG, CONFIRM_OF
from sweeps.space import RULES, Space
from workloads.contract import DIVERGED, SEED_KNOB, ConfigError
from workloads.knobs import format_knob

BASELINE = "baseline"  # CONFIRM_OF of the baseline's confirm runs


def select_finalists(space: Space, table: pd.DataFrame,
                     configs: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """The best `confirm.finalists` search trials that finished (not the baseline, not pruned,
    diverged or errored), best first: [{"trial_id", "params"}] with their Tune configs — or,
    when the space was given finalists (`confirm.given`, --confirm-knobs-from), those.

    "Best" is the results table's order (the objective), or with `confirm.select_by` the
    order of that metric among the trials whose single-seed Δ vs the search's baseline trial
    is within every non-inferiority margin of the decision (none are without a finished
    baseline trial to compare with)."""
    if space.confirm.given:
        return [{"trial_id": f["trial_id"], "params": dict(f["params"])}
                for f in space.confirm.given]
    done = table[(table["outcome"] == "finished") & (~table["baseline"])]
    by = space.confirm.select_by
    if by is not None:
        base = table[table["baseline"] & (table["outcome"] == "finished")]
        if base.empty:
            return []  # nothing is known to be within the margins
        done = done[[within_margins(space, base.iloc[0], row) and math.isfinite(float(row[by]))
                     for _, row in done.iterrows()]]
        goal = dict(space.get_workload().metrics)[by]
        done = done.sort_values(by, ascending=goal == "minimize", kind="stable")
    return [{"trial_id": tid, "params": dict(configs[tid])}
            for tid in list(done["trial_id"])[:space.confirm.finalists]]


_GIVEN_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")


def given_problems(space: Space, finalists: Sequence[Mapping[str, Any]], flag: str) -> list[str]:
    """Why another sweep's finalists cannot be confirmed in `space` ([] if they can): at most
    `finalists` of them, each with its own short id (not "baseline"), setting only knobs this
    space searches (a conditional one only where its condition holds), to values the workload
    accepts."""
    searched = {p.name: p for p in space.parameters}
    cap = int(RULES["finalists"].hi)
    ids = [f["trial_id"] for f in finalists]
    if len(finalists) > cap:
        return [f"{flag}: {len(finalists)} finalists; at most {cap}"]
    if not all(isinstance(t, str) and _GIVEN_ID.fullmatch(t) for t in ids) \
            or len(set(ids)) != len(ids) or BASELINE in ids:
        return [f"{flag}: finalist ids must be distinct, 1-40 letters, digits, _ or -, and not "
                f"{BASELINE!r} (got {clip(', '.join(map(repr, ids)), 200)})"]
    problems = []
    for f in finalists:
        who = f"{flag}: finalist {f['trial_id']}"
        params = f["params"]
        extra = sorted(set(params) - set(searched))
        if extra:
            problems.append(f"{who} sets {clip(', '.join(extra), 100)}, which "
                            f"{os.path.basename(space.path)} does not search (it searches "
                            f"{clip(', '.join(sorted(searched)), 100)})")
            continue
        idle = [k for k in params if not all(params.get(c) == v
                                             for c, v in searched[k].when.items())]
        if idle:
            problems.append(f"{who} sets {clip(', '.join(idle), 100)} where its condition "
                            "(`when`) does not hold")
            continue
        try:  # coerces each value ("1,2,4" -> [1, 2, 4]) and checks it against its domain
            space.trial_config(params)
        except ConfigError as e:
            problems.append(f"{who}: {clip(e, 200)}")
        except (TypeError, ValueError, OverflowError) as e:  # a value no knob could take
            problems.append(f"{who}: unusable value ({clip(e, 100)})")
    return problems


def within_margins(space: Space, base: pd.Series, row: pd.Series) -> bool:
    """Is a search trial's single-seed Δ vs the baseline trial's row within every
    non-inferiority margin of the decision (relative where the criterion is)?"""
    criteria = space.decision.criteria if space.decision else ()
    for c in criteria:
        if c.kind != "non_inferiority":
            continue
        d = improvements([row[c.metric]], [base[c.metric]], goal=c.goal,
                         relative=c.relative)[0]
        if not d > c.threshold():  # NaN (no value) is not within the margin either
            return False
    return True


def confirm_seeds(space: Space) -> list[int]:
    """Fresh seeds: the search ran every trial with seed s0; confirmation uses s0+1 .. s0+n,
    shifted by `confirm.seed_offset` (a follow-up confirmation skips the seeds already used)."""
    s0 = int(space.trial_config({})[SEED_KNOB])
    return [s0 + 1 + space.confirm.seed_offset + i for i in range(space.confirm.seeds)]


def confirm_configs(space: Space, finalists: Sequence[Mapping[str, Any]],
                    seeds: Sequence[int]) -> list[dict]:
    """One Tune config per (seed, baseline or finalist): seed order, the baseline first."""
    cases = [(BASELINE, {**(space.baseline or {}), BASELINE_TAG: True})]
    cases += [(f["trial_id"], {**{k: v for k, v in f["params"].items() if k != BASELINE_TAG},
                               BASELINE_TAG: False}) for f in finalists]
    # Tune's BasicVariantGenerator needs every config to have the same keys: a knob one case
    # does not set gets the value that case runs with anyway.
    keys = {k for _, params in cases for k in params}
    filled = []
    for of, params in cases:
        knobs = space.trial_knobs(params)
        filled.append((of, {k: params[k] if k in params else _plain(knobs[k]) for k in keys}))
    # Seed by seed (all cases of seed 1, then of seed 2, ...): a stage cut short by the time
    # limit still has whole pairs, and each seed's data is drawn and decoded while it is used.
    fresh_data = data_seeds(space, seeds)
    return [{**params, SEED_KNOB: seed, **fresh_data.get(seed, {}), CONFIRM_OF: of}
            for seed in seeds for of, params in filled]


def data_seeds(space: Space, seeds: Sequence[int]) -> dict[int, dict[str, int]]:
    """{seed: {data seed knob: value}}: the search's data seed moved by as much as the seed
    ({} for a workload without a data seed knob). Same for every case: pairing by seed pairs
    the data too."""
    knob = space.get_workload().data_seed_knob
    if knob is None:
        return {}
    base = space.trial_config({})
    return {seed: {knob: int(base[knob]) + seed - int(base[SEED_KNOB])} for seed in seeds}


def _plain(value: Any) -> Any:
    """Lists travel as "1,2,4" in Tune configs, like searched list choices."""
    return format_knob(value) if isinstance(value, (list, tuple)) else value


def per_seed_metrics(space: Space, runs: Sequence[Mapping[str, Any]], seeds: Sequence[int],
                     metrics: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """{confirm_of: {metric: [value per seed]}} from the confirm runs (dicts with config,
    metrics, error). A run that diverged is -inf — a failed seed, evidence against it; a run
    that errored, stopped early or is missing is NaN — no comparison (sweeps/decision.py drops
    the pair). Never a crash."""
    epochs = space.epochs()
    found: dict[tuple[str, int], Optional[float]] = {}
    values: dict[tuple[str, int], Mapping[str, Any]] = {}
    for r in runs:
        cfg, m = r.get("config") or {}, r.get("metrics") or {}
        key = (str(cfg.get(CONFIRM_OF)), int(cfg.get(SEED_KNOB, -1)))
        if float(m.get(DIVERGED, 0.0)) >= 1.0:
            found[key] = -math.inf
        elif not r.get("error") and int(m.get("epoch", 0)) >= epochs:
            found[key], values[key] = None, m
        else:
            found[key] = math.nan
    out: dict[str, dict[str, list[float]]] = {}
    for of in {of for of, _ in found}:
        out[of] = {name: [_finite_or_nan(values[(of, s)].get(name)) if (of, s) in values
                          else found.get((of, s), math.nan) for s in seeds]
                   for name in metrics}
    return out


def verdict(space: Space, finalists: Sequence[Mapping[str, Any]], seeds: Sequence[int],
            runs: Sequence[Mapping[str, Any]]) -> Optional[Verdict]:
    """The decision over the confirm runs, or None when the space has no decision criteria."""
    if space.decision is None or not finalists:
        return None
    names = sorted({c.metric for c in space.decision.criteria} | {space.primary.name})
    values = per_seed_metrics(space, runs, seeds, names)
    nan_seeds = {n: [math.nan] * len(seeds) for n in names}
    knobs = {f["trial_id"]: {p.name: f["params"].get(p.name) for p in space.parameters
                             if p.name in f["params"]} for f in finalists}
    return decide(finalists={f["trial_id"]: values.get(f["trial_id"], nan_seeds)
                             for f in finalists},
                  baseline=values.get(BASELINE, nan_seeds), knobs=knobs,
                  criteria=space.decision.criteria, confidence=space.decision.confidence,
                  objective=space.primary.name, objective_goal=space.primary.goal)


def _finite_or_nan(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def follow_up(space: Space, verdict: Optional[Verdict]) -> Optional[str]:
    """A follow-up for INCONCLUSIVE finalists, or None: more seeds pooled with these (the
    same seeds run again, new ones join) or a replication on unused seeds judged alone. Either
    is a second test after this one, so over both stages a null effect is called ✓ more often
    than the stated level (README: "What an INCONCLUSIVE verdict asks for")."""
    needed = [f.seeds_needed for f in (verdict.finalists if verdict else ())
              if f.verdict == "INCONCLUSIVE" and f.seeds_needed]
    if not needed or space.confirm is None:
        return None
    used = space.confirm.seed_offset + space.confirm.seeds
    return (f"a follow-up: the same command with --confirm-seeds {max(needed)} (pooled with "
            f"these seeds), or with --confirm-seed-offset {used} too (a replication judged "
            f"alone); either is a second test after this one - report it as such")


def second_test_note(space_file: Space, space: Space) -> Optional[str]:
    """When the command line changed the confirmation's seeds (`space` vs the `space_file` as
    written), the verdict is likely the follow-up of an earlier one: say what its seeds are
    to the space file's and how to report it. None when they are the space file's own."""
    if space_file.confirm is None or space.confirm is None:
        return None
    was, now = confirm_seeds(space_file), confirm_seeds(space)
    if was == now:
        return None
    told = f"seeds {seed_span(now)} (the space file's: {seed_span(was)})"
    if not set(was) & set(now):
        how = f"{told}: a replication on seeds and data draws they do not share, judged alone"
    elif set(was) <= set(now):
        how = f"{told}: the space file's seeds again, pooled with {len(now) - len(was)} more"
    else:
        how = (f"{told}: they share {len(set(was) & set(now))} seeds, so this is neither a "
               f"replication (disjoint seeds) nor a pooled follow-up (all of them again)")
    return (f"Confirmation {how}. If this follows an INCONCLUSIVE verdict, it is a second "
            f"test: report both, and that a null effect passes one of two tests more often than "
            f"the stated level (README, \"What an INCONCLUSIVE verdict asks for\").")


def seed_span(seeds: Sequence[int]) -> str:
    """"1–12" (or "3" for one seed): a run of confirmation seeds in prose."""
    return f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
