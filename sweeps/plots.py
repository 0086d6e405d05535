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
    verdict.png                the verdict itself: per finalist and criterion, each seed's
                               paired improvement over the baseline, their mean and the
                               interval the test used, against the criterion's bar
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
from sweeps.decision import (SYMBOL, Verdict, ci_levels, criterion_rule,  # noqa: E402
                             format_knobs)
from sweeps.report import decision_metrics, finished_baseline, trial_outcome  # noqa: E402
from sweeps.space import Space  # noqa: E402

BASE_COLOR, SEARCH_COLOR = "0.35", "tab:blue"
PAIRED_NOTE = ("Bars and band: 95% CI of each arm's mean over its seeds (unpaired) — the verdict "
               "tests the paired differences (same seed), which cancel most seed noise")
FRESH_DATA_NOTE = ("Confirmation runs draw fresh data with each seed; search trials ran on the "
                   "search's data.")
FINALIST_COLORS = ("tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown")
MIN_IMPORTANCE_TRIALS = 10  # finished search trials before param_importances.png is drawn


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


def _finished_search(search: Sequence[Mapping], space: Space) -> tuple[list[Mapping], str]:
    """The search trials (not the baseline) that ran every epoch, and a footnote naming the
    ones left out: a pruned trial's last values are from an earlier epoch than everyone
    else's, so beside final values they mislead (report.md has its Δ at its own epoch)."""
    kept, out = [], {}
    for t in search:
        if t["config"].get(BASELINE_TAG):
            continue
        o = _outcome(t, space)
        if o == "finished":
            kept.append(t)
        else:
            out[o] = out.get(o, 0) + 1
    note = ("Not shown: " + ", ".join(f"{n} {o} search trial{'s' if n > 1 else ''}"
                                      for o, n in out.items())
            + " (values from an earlier epoch, or none; see report.md)") if out else ""
    return kept, note


def _side_by_side(xs: Sequence[Optional[float]], log: bool,
                  everywhere: Sequence[float]) -> list[Optional[float]]:
    """Finalists' x positions, those sharing a value spread a little around it (a factor
    10^±0.04 per step on a log axis, ±4 % of the knob's plotted span on a linear one), so
    their error bars sit side by side instead of on top of each other."""
    known = [x for x in xs if x is not None]
    span = (max([*everywhere, *known]) - min([*everywhere, *known]) or 1.0) if known else 1.0
    placed = []
    for i, x in enumerate(xs):
        if x is not None and xs.count(x) > 1:
            k = [j for j, v in enumerate(xs) if v == x].index(i) - (xs.count(x) - 1) / 2
            x = x * 10 ** (0.04 * k) if log else x + 0.04 * span * k
        placed.append(x)
    return placed


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
    finished_search, left_out = _finished_search(search, space)
    search_baseline = finished_baseline(search, space)
    for p in space.parameters:
        log = _numeric_axis(p.distribution)
        if log is None:
            continue
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8),
                                 squeeze=False)
        finalists = [(k, v) for k, v in groups.items() if k != "baseline"]
        placed = _side_by_side([v[0]["config"].get(p.name) for _, v in finalists], log,
                               [t["config"][p.name] for t in search if p.name in t["config"]])
        for ax, metric in zip(axes[0], metrics):
            xy = [(t["config"][p.name], t["metrics"].get(metric, math.nan))
                  for t in finished_search if p.name in t["config"]]
            xy = [(x, y) for x, y in xy if math.isfinite(y)]
            if xy:
                ax.scatter(*zip(*xy), color=SEARCH_COLOR, alpha=0.7,
                           label="search trial (finished, 1 seed)")
            base_search = [t["metrics"].get(metric, math.nan) for t in search_baseline]
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
            for (of, runs), x in zip(finalists, placed):
                color = colors[of]
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
            ax.set_ylabel(space.get_workload().metric_label(metric))
            ax.set_title(f"{metric} vs {p.name} ({_better(goals.get(metric, 'maximize'))})",
                         fontsize=10)
            ax.grid(alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        note = "\n".join(filter(None, [paired_note(space) if groups else "", left_out]))
        foot = _footnote(fig, note, 7.5) if note else 0.0
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

    def xy(trials: Sequence[Mapping]) -> list[tuple[float, float]]:
        pts = [(t["metrics"].get(x_m, math.nan), t["metrics"].get(y_m, math.nan)) for t in trials]
        return [p for p in pts if all(math.isfinite(v) for v in p)]

    finished_search, left_out = _finished_search(search, space)
    pts = xy(finished_search)
    base_search = xy(finished_baseline(search, space))
    if pts:
        ax.scatter(*zip(*pts), color=SEARCH_COLOR, alpha=0.6,
                   label="search trial (finished, 1 seed)")
        # the baseline is one of the options: a trial it dominates is not on the front
        front = _pareto(pts + base_search, (goals.get(x_m, "maximize"),
                                            goals.get(y_m, "maximize")))
        ax.plot(*zip(*front), color=SEARCH_COLOR, lw=1, ls="--",
                label="Pareto front (finished search trials and their baseline)")
    groups = _confirm_groups(confirm, space)
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
    label = space.get_workload().metric_label
    ax.set_xlabel(f"{label(x_m)} ({_better(goals.get(x_m, 'maximize'))})")
    ax.set_ylabel(f"{label(y_m)} ({_better(goals.get(y_m, 'maximize'))})")
    ax.set_title(f"Trade-off: {x_m} (objective) vs {y_m}", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    note = "\n".join(filter(None, [paired_note(space) if groups else "", left_out]))
    foot = _footnote(fig, note, 7) if note else 0.0
    return _save(fig, os.path.join(out_dir, "tradeoff.png"), rect=(0, foot, 1, 1))


def rebuilt_study(space: Space, search: Sequence[Mapping]) -> optuna.Study:
    """An in-memory Optuna study of the search trials (not the baseline), for Optuna's plots.
    A trial that did not run every epoch is PRUNED there (no value): Optuna's plots then leave
    it out instead of drawing an earlier epoch's value as a final one."""
    o = space.primary
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=o.goal)
    dists = {p.name: p.distribution for p in space.parameters}
    for t in search:
        value = t["metrics"].get(o.name, math.nan)
        if t["config"].get(BASELINE_TAG) or not math.isfinite(value):
            continue
        params = {k: v for k, v in t["config"].items() if k in dists}
        done = _outcome(t, space) == "finished"
        try:
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: dists[k] for k in params},
                value=value if done else None,
                state=optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.PRUNED))
        except ValueError:  # a value outside the space as it is now (e.g. edited on resume)
            continue
    return study


def optuna_plots(space: Space, search: Sequence[Mapping], out_dir: str) -> list[str]:
    from optuna.visualization import matplotlib as ovm
    study = rebuilt_study(space, search)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    o = space.primary
    base = [t["metrics"].get(o.name, math.nan) for t in finished_baseline(search, space)]
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna flags its matplotlib backend experimental
        if complete:
            ax = ovm.plot_optimization_history(study)
            if base and math.isfinite(base[0]):  # did the search find anything better?
                ax.axhline(base[0], color=BASE_COLOR, lw=1.2, ls=":",
                           label="baseline (search trial, 1 seed)")
                lo, hi = ax.get_ylim()  # room for the line when it is the highest or lowest
                lo, hi = min(lo, base[0]), max(hi, base[0])
                ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
                ax.legend(fontsize=8, loc="best")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(f"{space.get_workload().metric_label(o.name)} ({_better(o.goal)})")
            ax.set_xlabel("search trial # (the order Tune lists them)")
            pruned = len(study.trials) - len(complete)
            ax.set_title(f"Optimization history ({len(complete)} finished search trials"
                         + (f"; {pruned} pruned, not shown" if pruned else "") + ")", fontsize=11)
            paths.append(_save(ax.figure, os.path.join(out_dir, "optimization_history.png")))
        varying = [p for p in space.parameters if len({str(t.params.get(p.name))
                                                       for t in complete}) > 1]
        # fANOVA on a handful of points ranks whichever knob those few trials happened to vary
        # along with the objective: below this many it draws noise as a finding
        if len(complete) >= MIN_IMPORTANCE_TRIALS and varying:
            ax = ovm.plot_param_importances(study)
            ax.set_title("", loc="left")  # Optuna's own title would overlap ours
            ax.set_title(f"Parameter importances for {o.name} (fANOVA over "
                         f"{len(complete)} finished search trials)", fontsize=11)
            paths.append(_save(ax.figure, os.path.join(out_dir, "param_importances.png")))
    return paths


def learning_curves(space: Space, search: Sequence[Mapping], confirm: Sequence[Mapping],
                    out_dir: str) -> Optional[str]:
    metrics = decision_metrics(space)
    goals = dict(space.get_workload().metrics)
    groups = _confirm_groups(confirm, space)
    title = "confirmation runs (fresh seeds" + (
        " and data" if space.get_workload().data_seed_knob else "") + "): mean ± sd"
    if not groups:  # no confirmation: the baseline and the best search trial, one seed each
        title = "search trials, 1 seed each"
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
        ax.set_ylabel(space.get_workload().metric_label(metric))
        ax.set_title(f"{metric} per epoch ({_better(goals.get(metric, 'maximize'))})",
                     fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, title=title, title_fontsize=8)
    return _save(fig, os.path.join(out_dir, "learning_curves.png"))


def verdict_plot(space: Space, verdict: Optional[Verdict], confirm: Sequence[Mapping],
                 out_dir: str) -> Optional[str]:
    """The verdict table as a picture. The other plots show each arm's level with unpaired
    intervals, which can hide an effect the paired test finds (the seeds' and data draws'
    spread is shared by both arms): here each dot is one seed's finalist − baseline."""
    if verdict is None:
        return None
    fig, foot = verdict_figure(space, verdict, confirm)
    return _save(fig, os.path.join(out_dir, "verdict.png"), rect=(0, foot, 0.98, 0.93))


def verdict_figure(space: Space, verdict: Verdict, confirm: Sequence[Mapping]):
    """(figure, footnote height) of verdict.png; one panel per criterion, one row per finalist."""
    crits, fins = verdict.finalists[0].criteria, verdict.finalists
    # the colours of the other plots (their groups are the confirm runs that finished)
    colors = _group_colors(list(_confirm_groups(confirm, space)))
    fig, axes = plt.subplots(1, len(crits), figsize=(4.4 * len(crits), 1.8 + 0.6 * len(fins)),
                             squeeze=False)
    w = space.get_workload()
    for j, (ax, c) in enumerate(zip(axes[0], crits)):
        scale = 100.0 if c.relative else 1.0
        for i, f in enumerate(fins):
            r, y = f.criteria[j], len(fins) - 1 - i
            color = colors.get(f.trial_id, FINALIST_COLORS[i % len(FINALIST_COLORS)])
            d = np.asarray(r.diffs, dtype=float) * scale
            ok = d[np.isfinite(d)]
            ax.scatter(ok, np.full(ok.size, y) + np.linspace(-0.12, 0.12, ok.size),
                       s=14, color="0.45", zorder=3, label="one seed" if i == j == 0 else None)
            note = ""
            if r.n_failed_seeds:  # no mean or interval: those seeds have no value
                note = f"diverged on {r.n_failed_seeds}/{r.n_seeds} seeds"
            elif math.isfinite(r.mean):
                lo, hi = r.ci_low * scale, r.ci_high * scale
                if math.isfinite(lo) and math.isfinite(hi):
                    ax.plot([lo, hi], [y, y], color=color, lw=2.2, zorder=2)
                elif r.sd == 0.0:
                    note = "the same on every seed: no spread, no interval"
                ax.scatter([r.mean * scale], [y], marker="s", s=40, color=color, zorder=4)
            if note:
                ax.annotate(note, (0.5, y - 0.3), xycoords=("axes fraction", "data"),
                            ha="center", va="center", fontsize=7, color="0.25")
            ax.annotate(SYMBOL[r.status], (1.01, y), xycoords=("axes fraction", "data"),
                        va="center", fontsize=11, color=_STATUS_COLOR[r.status])
        ax.axvline(0.0, color="0.6", lw=0.8)
        ax.axvline(c.threshold * scale, color="black", ls="--", lw=1,
                   label="the criterion's bar" if j == 0 else None)
        ax.set_yticks(range(len(fins)))
        ax.set_yticklabels([f"{f.trial_id}: {f.verdict}\n{format_knobs(f.knobs, ' ')}"
                            for f in reversed(fins)] if j == 0 else [], fontsize=8)
        ax.set_ylim(-0.6, len(fins) - 0.4)
        unit = "% of the baseline" if c.relative else w.metric_unit(c.metric)
        ax.set_title(f"{c.metric}: {criterion_rule(c.kind, c.margin, c.relative)}", fontsize=10)
        ax.set_xlabel("improvement over the baseline" + (f" [{unit}]" if unit else "")
                      + "\n(right = better)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    chosen = f" (trial {verdict.trial_id})" if verdict.trial_id else ""
    fig.suptitle(f"Verdict: {verdict.verdict}{chosen}", fontsize=11)
    foot = _footnote(fig, "Dots: one seed each, finalist − baseline on the same seed"
                     + (" and data draw" if w.data_seed_knob else "")
                     + f". Square and line: their mean and the paired-t interval at the level "
                     f"Holm used for that test ({ci_levels(verdict)}). ✓ met (the interval lies beyond the "
                     "dashed bar, on the better side), ✗ failed (wholly on the worse side), "
                     f"? unsettled. Test: {verdict.method}.", 7)
    fig.legend(loc="upper left", fontsize=7, frameon=False)
    return fig, foot


_STATUS_COLOR = {"met": "tab:green", "failed": "tab:red", "unsettled": "0.4"}


def write_plots(space: Space, search: Sequence[Mapping], confirm: Sequence[Mapping],
                out_dir: str, verdict: Optional[Verdict] = None) -> list[str]:
    """Every plot that can be drawn; returns the PNG paths. A plot that fails is skipped with
    a warning: pictures must never fail a sweep whose trials have all run."""
    paths: list[str] = []
    for name, draw in (("verdict", lambda: verdict_plot(space, verdict, confirm, out_dir)),
                       ("dose-response", lambda: dose_response(space, search, confirm, out_dir)),
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
