"""The end of a sweep: a ranked table, results.csv and best_config.yaml."""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Optional

import pandas as pd
import yaml

from sweeps.keys import BASELINE_TAG, DIVERGED, EPOCH
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


def results_table(space: Space, trials: list[dict]) -> pd.DataFrame:
    """One row per trial, best first. `trials`: dicts with trial_id, config, metrics, error."""
    epochs = space.epochs()
    searched = [p.name for p in space.parameters]
    rows = []
    for t in trials:
        metrics, config = t.get("metrics") or {}, t.get("config") or {}
        row = {"trial_id": t["trial_id"],
               "outcome": trial_outcome(metrics, epochs, bool(t.get("error"))),
               "baseline": bool(config.get(BASELINE_TAG, False))}
        values = _baseline_values(space) if row["baseline"] else config
        for name in searched:
            row[name] = _cell(values.get(name))
        for o in space.objectives:
            row[o.name] = metrics.get(o.name, math.nan)
        row["epochs"] = int(metrics.get(EPOCH, 0))
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    scores = [tuple(_score(r[o.name], o.goal) for o in space.objectives) for r in rows]
    df["pareto_front"] = _pareto_rank(scores) if space.multi_objective else 0
    df["_primary"] = [s[0] for s in scores]
    df = df.sort_values(["pareto_front", "_primary"], ascending=[True, False], kind="stable")
    df = df.drop(columns=["_primary"] + ([] if space.multi_objective else ["pareto_front"]))
    df.insert(0, "rank", range(1, len(df) + 1))
    return df.reset_index(drop=True)


def best_trial(df: pd.DataFrame, space: Space) -> Optional[pd.Series]:
    usable = df[[math.isfinite(_score(v, space.primary.goal)) for v in df[space.primary.name]]] \
        if not df.empty else df
    return None if usable.empty else usable.iloc[0]


def write_outputs(run_dir: str, space: Space, df: pd.DataFrame,
                  best_knobs: Optional[Mapping[str, Any]]) -> list[str]:
    """results.csv and best_config.yaml, written atomically (tmp + rename); returns the paths."""
    paths = []
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
