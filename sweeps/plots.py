"""The sweep's pictures (matplotlib, headless), written as PNGs into the sweep directory and
logged to the MLflow parent run. Each plot says in its title what the marks are and which way
is better; a plot that cannot be drawn (too few trials) is skipped and the reason returned.

    dose_response_<knob>.png   each decision metric against a numeric searched knob: search
                               trials as points, confirm runs as mean ± CI, the baseline as a band
    tradeoff.png               the objective against the second decision metric, Pareto front
                               of the search trials, baseline and finalists marked
    optimization_history.png,  Optuna's own plots, on a study rebuilt from the search trials
    param_importances.png
    learning_curves.png        decision metrics per epoch: baseline and finalists (confirm
                               runs: mean ± sd over seeds), else the best search trial
"""
from __future__ import annotations

import itertools
import math
import os
import textwrap
import warnings
from typing import Any, Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import optuna.distributions as od  # noqa: E402
from scipy import stats  # noqa: E402

from sweeps.keys import BASELINE_TAG, CONFIRM_OF  # noqa: E402
from sweeps.report import decision_metrics, trial_outcome  # noqa: E402
from sweeps.space import Space  # noqa: E402

BASE_COLOR, SEARCH_COLOR = "0.35", "tab:blue"
PAIRED_NOTE = ("Bars and band: 95% CI of each arm's mean over its seeds (unpaired) — the verdict "
               "tests the paired differences (same seed), which cancel most seed noise")
FRESH_DATA_NOTE = ("Confirmation runs draw fresh data with each seed; search trials ran on the "
                   "search's data.")
FINALIST_COLORS = ("tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def paired_note(space: Space) -> str:
    if space.get_workload().data_seed_knob is None:
        return PAIRED_NOTE
    return FRESH_DATA_NOTE + "\n" + PAIRED_NOTE.replace("(same seed)", "(same seed and data)")


def _footnote(fig, text: str, fontsize: float) -> float:
    """`text` wrapped to the figure's width at its foot; returns the height it takes (figure
    fraction), so legends and axes can sit above it."""
    chars = int(fig.get_figwidth() * 72 / (fontsize * 0.55))
    lines = [w for para in text.split("\n") for w in textwrap.wrap(para, chars)]
    fig.text(0.5, 0.005, "\n".join(lines), ha="center", va="bottom", fontsize=fontsize,
             color="0.3")
    return (len(lines) * fontsize * 1.3 / 72 + 0.05) / fig.get_figheight()


def _better(goal: str) -> str:
    return "higher is better" if goal == "maximize" else "lower is better"


def _mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the t interval) over the finite values."""
    v = np.asarray([x for x in values if isinstance(x, (int, float)) and math.isfinite(x)])
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), 0.0
    return float(v.mean()), float(stats.t.ppf(0.5 + confidence / 2, v.size - 1)
                                  * v.std(ddof=1) / math.sqrt(v.size))


def _outcome(trial: Mapping[str, Any], space: Space) -> str:
    return trial_outcome(trial["metrics"], space.epochs(), bool(trial.get("error")))


def _save(fig, path: str, rect: tuple = (0, 0, 1, 1)) -> str:
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _confirm_groups(confirm: Sequence[Mapping[str, Any]], space: Space
                    ) -> dict[str, list[Mapping]]:
    """{confirm_of: its confirm runs that ran every epoch}: values at the last epoch. A
    diverged run (a failed seed in the verdict) and an errored or cut-short one are not
    plotted, so a group's "N seeds" can be fewer than the verdict's."""
    groups: dict[str, list[Mapping]] = {}
    for r in confirm:
        if _outcome(r, space) != "finished":
            continue
        groups.setdefault(str(r["config"].get(CONFIRM_OF)), []).append(r)
    return groups


def _group_colors(names: Sequence[str]) -> dict[str, str]:
    """One color per group, the same in every plot: the baseline gray, the finalists in turn
    (repeating past the fifth rather than dropping a group)."""
    finalists = itertools.cycle(FINALIST_COLORS)
    return {n: BASE_COLOR if n == "baseline" else next(finalists) for n in names}


def dose_response(space: Space, search: Sequence[Mapping], confirm: Sequence[Mapping],
                  out_dir: str) -> list[str]:
    paths = []
    goals = dict(space.get_workload().metrics)
    groups = _confirm_groups(confirm, space)
    colors = _group_colors(list(groups))
    metrics = decision_metrics(space)
    for p in space.parameters:
        log = _numeric_axis(p.distribution)
        if log is None:
            continue
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8),
                                 squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            pts = [(t["config"][p.name], t["metrics"].get(metric, math.nan), _outcome(t, space))
                   for t in search if p.name in t["config"] and not t["config"].get(BASELINE_TAG)]
            for outcome, marker, label in (
                    ("finished", "o", "search trial (finished, 1 seed)"),
                    # ASHA stopped it early: its value is from an earlier epoch than the others'
                    ("pruned", "x", "search trial (pruned: its last epoch's value, 1 seed)")):
                xy = [(x, y) for x, y, o in pts if o == outcome and math.isfinite(y)]
                if xy:
                    ax.scatter(*zip(*xy), marker=marker, color=SEARCH_COLOR, alpha=0.7,
                               label=label)
            base_search = [t["metrics"].get(metric, math.nan) for t in search
                           if t["config"].get(BASELINE_TAG) and _outcome(t, space) == "finished"]
            base = [r["metrics"].get(metric, math.nan) for r in groups.get("baseline", [])]
            if base and base_search and math.isfinite(base_search[0]):
                # the search points' own reference (same seed and data as they): with fresh
                # confirmation draws the band below can sit elsewhere
                ax.axhline(base_search[0], color=BASE_COLOR, lw=1.0, ls=":",
                           label="baseline (search trial, 1 seed)")
            if not base:
                base, confirm_label = base_search, ""
            else:
                confirm_label = "confirm, "
            m, h = _mean_ci(base)
            if math.isfinite(m):
                ax.axhspan(m - h, m + h, color=BASE_COLOR, alpha=0.25, lw=0)
                ax.axhline(m, color=BASE_COLOR, lw=1.2,
                           label=f"baseline ({confirm_label}{len(base)} "
                                 f"seed{'s' if len(base) > 1 else ''}"
                                 f"{', 95% CI' if len(base) > 1 else ''})")
            for of, runs in ((k, v) for k, v in groups.items() if k != "baseline"):
                color = colors[of]
                x = runs[0]["config"].get(p.name)
                m, h = _mean_ci([r["metrics"].get(metric, math.nan) for r in runs])
                if x is not None and math.isfinite(m):
                    ax.errorbar([x], [m], yerr=[h], fmt="s", color=color, capsize=4, ms=7,
                                label=f"finalist {of} ({len(runs)} seeds, 95% CI)")
            if log:
                ax.set_xscale("log")
            elif isinstance(p.distribution, od.IntDistribution) or all(
                    isinstance(c, int) for c in getattr(p.distribution, "choices", [0.5])):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel(p.name + (" (log scale)" if log else ""))
            ax.set_ylabel(metric)
            ax.set_title(f"{metric} vs {p.name} ({_better(goals.get(metric, 'maximize'))})",
                         fontsize=10)
            ax.grid(alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        foot = _footnote(fig, paired_note(space), 7.5) if groups else 0.0
        ncol = min(len(labels), {1: 1, 2: 2}.get(len(metrics), 4))  # fits the figure width
        fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8,
                   bbox_to_anchor=(0.5, foot))
        legend_rows = -(-len(labels) // max(ncol, 1))
        path = os.path.join(out_dir, f"dose_response_{p.name}.png")
        fig.tight_layout(rect=(0, foot + (legend_rows * 8 * 1.5 + 8) / 72 / fig.get_figheight(),
                               1, 1))
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _numeric_axis(d: od.BaseDistribution) -> Optional[bool]:
    """None if the knob is not numeric, else whether its axis is logarithmic (a log
    distribution, or numeric choices spanning two decades or more)."""
    if isinstance(d, (od.FloatDistribution, od.IntDistribution)):
        return bool(d.log)
    choices = getattr(d, "choices", ())
    if choices and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
        positive = [c for c in choices if c > 0]
        return len(positive) == len(choices) and max(positive) >= 100 * min(positive)
    return None


def _pareto(points: list[tuple[float, float]], goals: tuple[str, str]) -> list[tuple]:
    sign = [1 if g == "maximize" else -1 for g in goals]
    s = [(a * sign[0], b * sign[1]) for a, b in points]
    front = [p for p, q in zip(points, s)
             if not any(r[0] >= q[0] and r[1] >= q[1] and r != q for r in s)]
    return sorted(front)


def tradeoff(space: Space, search: Sequence[Mapping], confirm: Sequence[Mapping],
             out_dir: str) -> Optional[str]:
    metrics = decision_metrics(space)
    if len(metrics) < 2:
        return None
    x_m, y_m = metrics[0], metrics[1]
    goals = dict(space.get_workload().metrics)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))

    def points(outcome: str) -> list[tuple[float, float]]:
        pts = [(t["metrics"].get(x_m, math.nan), t["metrics"].get(y_m, math.nan))
               for t in search
               if not t["config"].get(BASELINE_TAG) and _outcome(t, space) == outcome]
        return [p for p in pts if all(math.isfinite(v) for v in p)]

    pts, pruned = points("finished"), points("pruned")
    if pts:
        ax.scatter(*zip(*pts), color=SEARCH_COLOR, alpha=0.6,
                   label="search trial (finished, 1 seed)")
        front = _pareto(pts, (goals.get(x_m, "maximize"), goals.get(y_m, "maximize")))
        ax.plot(*zip(*front), color=SEARCH_COLOR, lw=1, ls="--",
                label="Pareto front (finished search trials)")
    if pruned:  # an earlier epoch's values: shown, never on the front
        ax.scatter(*zip(*pruned), marker="x", color=SEARCH_COLOR, alpha=0.6,
                   label="search trial (pruned: its last epoch's values)")
    groups = _confirm_groups(confirm, space)
    base_search = [(t["metrics"].get(x_m, math.nan), t["metrics"].get(y_m, math.nan))
                   for t in search
                   if t["config"].get(BASELINE_TAG) and _outcome(t, space) == "finished"]
    colors = _group_colors(list(groups))
    for of, runs in sorted(groups.items(), key=lambda kv: kv[0] != "baseline"):
        color = colors[of]
        (mx, hx), (my, hy) = (_mean_ci([r["metrics"].get(m, math.nan) for r in runs])
                              for m in (x_m, y_m))
        if math.isfinite(mx) and math.isfinite(my):
            ax.errorbar([mx], [my], xerr=[hx], yerr=[hy], fmt="*" if of == "baseline" else "s",
                        ms=12 if of == "baseline" else 8, color=color, capsize=4,
                        label=f"{of} (confirm, {len(runs)} seeds, 95% CI)")
    if base_search:  # the search points' own reference (same seed and data as they)
        ax.scatter(*zip(*base_search), marker="*", s=160, color=BASE_COLOR,
                   facecolors="none" if groups else BASE_COLOR,
                   label="baseline (search trial, 1 seed)" if groups else "baseline")
    ax.set_xlabel(f"{x_m} ({_better(goals.get(x_m, 'maximize'))})")
    ax.set_ylabel(f"{y_m} ({_better(goals.get(y_m, 'maximize'))})")
    ax.set_title(f"Trade-off: {x_m} (objective) vs {y_m}", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    foot = _footnote(fig, paired_note(space), 7) if groups else 0.0
    return _save(fig, os.path.join(out_dir, "tradeoff.png"), rect=(0, foot, 1, 1))


def rebuilt_study(space: Space, search: Sequence[Mapping]) -> optuna.Study:
    """An in-memory Optuna study of the search trials (not the baseline), for Optuna's plots."""
    o = space.primary
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=o.goal)
    dists = {p.name: p.distribution for p in space.parameters}
    for t in search:
        value = t["metrics"].get(o.name, math.nan)
        if t["config"].get(BASELINE_TAG) or not math.isfinite(value):
            continue
        params = {k: v for k, v in t["config"].items() if k in dists}
        try:
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: dists[k] for k in params}, value=value))
        except ValueError:  # a value outside the space as it is now (e.g. edited on resume)
            continue
    return study


def optuna_plots(space: Space, search: Sequence[Mapping], out_dir: str) -> list[str]:
    from optuna.visualization import matplotlib as ovm
    study = rebuilt_study(space, search)
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna flags its matplotlib backend experimental
        if len(study.trials) >= 1:
            ax = ovm.plot_optimization_history(study)
            ax.set_ylabel(f"{space.primary.name} ({_better(space.primary.goal)})")
            ax.set_xlabel("search trial # (the order Tune lists them)")
            ax.set_title(f"Optimization history ({len(study.trials)} search trials, "
                         f"baseline excluded)", fontsize=11)
            paths.append(_save(ax.figure, os.path.join(out_dir, "optimization_history.png")))
        varying = [p for p in space.parameters if len({str(t.params.get(p.name))
                                                       for t in study.trials}) > 1]
        if len(study.trials) >= 3 and varying:
            ax = ovm.plot_param_importances(study)
            ax.set_title("", loc="left")  # Optuna's own title would overlap ours
            ax.set_title(f"Parameter importances for {space.primary.name} (fANOVA over "
                         f"{len(study.trials)} search trials)", fontsize=11)
            paths.append(_save(ax.figure, os.path.join(out_dir, "param_importances.png")))
    return paths


def learning_curves(space: Space, search: Sequence[Mapping], confirm: Sequence[Mapping],
                    out_dir: str) -> Optional[str]:
    metrics = decision_metrics(space)
    goals = dict(space.get_workload().metrics)
    groups = _confirm_groups(confirm, space)
    if not groups:  # no confirmation: the baseline and the best search trial, one seed each
        finished = [t for t in search if _outcome(t, space) == "finished"
                    and not t["config"].get(BASELINE_TAG)]
        groups = {("baseline" if t["config"].get(BASELINE_TAG) else t["trial_id"]): [t]
                  for t in finished[:1] + [t for t in search if t["config"].get(BASELINE_TAG)]}
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False)
    colors = _group_colors(list(groups))
    for ax, metric in zip(axes[0], metrics):
        for of, runs in sorted(groups.items(), key=lambda kv: kv[0] != "baseline"):
            color = colors[of]
            curves = [{int(h["epoch"]): h.get(metric, math.nan) for h in r.get("history", [])
                       if "epoch" in h} for r in runs]
            epochs = sorted({e for c in curves for e in c})
            if not epochs:
                continue
            vals = np.array([[c.get(e, math.nan) for e in epochs] for c in curves], float)
            mean = np.nanmean(vals, axis=0)
            ax.plot(epochs, mean, color=color, marker=".",
                    label=f"{of} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
            if len(runs) > 1:
                sd = np.nanstd(vals, axis=0, ddof=1)
                ax.fill_between(epochs, mean - sd, mean + sd, color=color, alpha=0.2)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 1.25"
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per epoch ({_better(goals.get(metric, 'maximize'))})",
                     fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, title="mean ± sd over seeds", title_fontsize=8)
    return _save(fig, os.path.join(out_dir, "learning_curves.png"))


def write_plots(space: Space, search: Sequence[Mapping], confirm: Sequence[Mapping],
                out_dir: str) -> list[str]:
    """Every plot that can be drawn; returns the PNG paths. A plot that fails is skipped with
    a warning: pictures must never fail a sweep whose trials have all run."""
    paths: list[str] = []
    for name, draw in (("dose-response", lambda: dose_response(space, search, confirm, out_dir)),
                       ("trade-off", lambda: tradeoff(space, search, confirm, out_dir)),
                       ("learning curves", lambda: learning_curves(space, search, confirm,
                                                                   out_dir)),
                       ("Optuna", lambda: optuna_plots(space, search, out_dir))):
        try:
            drawn = draw()
        except Exception as e:  # noqa: BLE001 — reported, the sweep's results stand
            warnings.warn(f"plot {name} skipped: {type(e).__name__}: {str(e)[:200]}")
            plt.close("all")
            continue
        paths += drawn if isinstance(drawn, list) else [drawn] if drawn else []
    return paths
