"""Search-space files: parse, validate (every problem at once), and describe the sweep.

The layout follows the W&B sweep config (`method`, `metric`, `parameters`, `early_terminate`)
plus our keys (`workload`, `fixed`, `baseline`, `budget`, `resources`, `seed`). Everything is
checked here, before Ray starts: a typo must not cost cluster time. Each problem is one line,
`file: key.path: problem (got X; allowed Y)`, and all of them are raised together as SpaceError.

Parameters become `optuna.distributions` directly (Optuna bounds are inclusive, like W&B's).
List-valued choices (HTEN scales) are encoded as "1,2,4" strings: Optuna's categorical then sees
plain values, and MLflow shows a readable parameter; `Space.trial_config` decodes them.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

import optuna.distributions as od
import yaml

from sweeps.errors import SpaceError
from sweeps.keys import BASELINE_TAG
from workloads.contract import EPOCH, EPOCHS_KNOB, ConfigError, Workload
from workloads.knobs import Domain, coerce_knob, format_knob, shown
from workloads.registry import get_workload, is_known, workload_names

SPACES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "search_spaces")

TOP_KEYS = ("workload", "method", "metric", "parameters", "fixed", "baseline", "early_terminate",
            "budget", "resources", "seed", "name", "description")
METHODS = ("tpe", "random", "grid")
GOALS = ("minimize", "maximize")
PARAM_KEYS = ("values", "value", "distribution", "min", "max", "q", "when")
DISTRIBUTIONS = ("uniform", "q_uniform", "int_uniform", "log_uniform", "log_uniform_values",
                 "categorical", "constant")
EARLY_KEYS = ("type", "min_iter", "max_iter", "eta")
# W&B calls its early-termination `hyperband`; what runs here for both names is Ray's ASHA.
EARLY_TYPES = ("asha", "hyperband")
BUDGET_KEYS = ("trials", "max_concurrent", "time_limit_s")
RESOURCE_KEYS = ("workers_per_trial", "cpus_per_worker", "gpus_per_worker")
# Keys Ray Tune adds to every result; a metric of the same name would be overwritten.
TUNE_RESERVED = ("pid", "hostname", "node_ip", "timestamp", "date", "done", "training_iteration",
                 "time_this_iter_s", "time_total_s", "time_since_restore", "trial_id",
                 "experiment_tag", "iterations_since_restore", "checkpoint_dir_name", "config")


@dataclass(frozen=True)
class Objective:
    name: str
    goal: str  # "minimize" | "maximize"

    @property
    def mode(self) -> str:  # Ray Tune's spelling
        return "min" if self.goal == "minimize" else "max"

    def worst(self) -> float:
        return math.inf if self.goal == "minimize" else -math.inf


@dataclass(frozen=True)
class Parameter:
    name: str
    distribution: od.BaseDistribution
    when: Mapping[str, Any] = field(default_factory=dict)  # searched only if all hold


@dataclass(frozen=True)
class EarlyStop:
    min_iter: int = 1
    eta: int = 3
    max_iter: int | None = None  # default: the trial's epochs
    requested: str = "asha"      # the name the space used; ASHA runs either way

    def describe(self, epochs: int) -> str:
        name = "ASHA" if self.requested == "asha" else f"{self.requested} (W&B's name) runs as ASHA"
        return (f"{name} on {EPOCH}, grace {self.min_iter}, eta {self.eta}, "
                f"max {self.max_iter or epochs}")


@dataclass(frozen=True)
class Budget:
    trials: int = 8
    max_concurrent: int = 1
    time_limit_s: float | None = None


@dataclass(frozen=True)
class Resources:
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


@dataclass(frozen=True)
class Space:
    path: str
    workload: str
    method: str
    objectives: tuple[Objective, ...]
    parameters: tuple[Parameter, ...]
    fixed: Mapping[str, Any]
    baseline: Mapping[str, Any] | None
    early_stop: EarlyStop | None
    budget: Budget
    resources: Resources
    seed: int
    text: str  # the file as written, logged to the parent MLflow run

    @property
    def stem(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]

    @property
    def primary(self) -> Objective:
        return self.objectives[0]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def get_workload(self) -> Workload:
        return get_workload(self.workload)

    def trial_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Every knob of one trial by public name: workload defaults < fixed < searched."""
        wl = self.get_workload()
        return wl.public_values(wl.resolve({**self.fixed, **params}))

    def trial_knobs(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Every knob of a trial from Tune's config (searched values, maybe the baseline tag)."""
        return self.trial_config({k: v for k, v in config.items() if k != BASELINE_TAG})

    def epochs(self) -> int:
        """Epochs a finished trial has run: the workload's epochs knob (the contract names it)."""
        return int(self.trial_config({})[EPOCHS_KNOB])

    def grid_size(self) -> int:
        return math.prod(len(p.distribution.choices) for p in self.parameters)

    def num_trials(self) -> int:
        """Trials the sweep runs; a grid never runs more than its size (plus the baseline)."""
        if self.method == "grid":
            return min(self.budget.trials, self.grid_size() + (1 if self.baseline else 0))
        return self.budget.trials

    def override(self, *, trials: int | None = None, max_concurrent: int | None = None,
                 workers_per_trial: int | None = None, gpus_per_worker: float | None = None,
                 cpus_per_worker: float | None = None, seed: int | None = None,
                 fixed: Mapping[str, Any] | None = None) -> "Space":
        """A copy with command-line overrides applied; SpaceError (flag names) if invalid."""
        problems = []
        for flag, value, minimum in (("--trials", trials, 1), ("--max-concurrent", max_concurrent, 1),
                                     ("--workers-per-trial", workers_per_trial, 1),
                                     ("--gpus-per-worker", gpus_per_worker, 0),
                                     ("--cpus-per-worker", cpus_per_worker, 1e-9)):
            if value is not None and value < minimum:
                problems.append(f"{flag}: must be >= {minimum:g} (got {value})")
        new_fixed = dict(self.fixed)
        for key, value in (fixed or {}).items():
            if key in {p.name for p in self.parameters}:
                continue  # a searched knob stays searched; smoke overrides only what is fixed
            new_fixed[key] = value
        try:
            self.get_workload().resolve(new_fixed)
        except ConfigError as e:
            problems.append(f"{self.path}: fixed: {e}")
        if problems:
            raise SpaceError(problems)
        budget = dataclasses.replace(
            self.budget, trials=trials or self.budget.trials,
            max_concurrent=max_concurrent or self.budget.max_concurrent)
        resources = dataclasses.replace(
            self.resources,
            workers_per_trial=workers_per_trial or self.resources.workers_per_trial,
            gpus_per_worker=(self.resources.gpus_per_worker if gpus_per_worker is None
                             else gpus_per_worker),
            cpus_per_worker=cpus_per_worker or self.resources.cpus_per_worker)
        return dataclasses.replace(self, budget=budget, resources=resources, fixed=new_fixed,
                                   seed=self.seed if seed is None else seed)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def resolve_space_path(name: str) -> str:
    """A path as given, or a bare name looked up in search_spaces/ (".yaml" optional)."""
    candidates = [name]
    if not os.path.dirname(name):
        candidates += [os.path.join(SPACES_DIR, name), os.path.join(SPACES_DIR, name + ".yaml")]
    for c in candidates:
        if os.path.isfile(c):
            return c
    raise SpaceError([f"{name}: space file not found (looked at {name!r} and in {SPACES_DIR})"])


def load_space(name: str) -> Space:
    path = resolve_space_path(name)
    with open(path) as f:
        text = f.read()
    label = os.path.basename(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpaceError([f"{label}: not valid YAML{where}: {getattr(e, 'problem', e)}"]) from None
    return parse_space(raw, path=path, text=text)


def parse_space(raw: Any, *, path: str, text: str = "") -> Space:
    return _Parser(os.path.basename(path)).parse(raw, path, text)


# --------------------------------------------------------------------------------------------
# The parser: collects every problem, raises once
# --------------------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v)))


def _encode_choice(v: Any) -> Any:
    """Optuna categoricals hold None/bool/int/float/str: lists travel as "1,2,4"."""
    return format_knob(v) if isinstance(v, (list, tuple)) else v


class _Parser:
    def __init__(self, label: str):
        self.label = label
        self.problems: list[str] = []
        self.workload_: Workload | None = None

    def bad(self, key: str, msg: str) -> None:
        self.problems.append(f"{self.label}: {key}: {msg}")

    def mapping(self, raw: Any, key: str, allowed: tuple[str, ...] | None) -> dict:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.bad(key, f"must be a mapping (got {raw!r})")
            return {}
        if allowed is not None:
            for k in raw:
                if k not in allowed:
                    self.bad(f"{key}.{k}" if key else str(k),
                             f"unknown key (allowed: {', '.join(allowed)})")
        return raw

    def int_at_least(self, raw: Mapping, key: str, path: str, minimum: int, default: Any) -> Any:
        v = raw.get(key, default)
        if v is default:
            return v
        if not _is_int(v) or v < minimum:
            self.bad(path, f"must be an integer >= {minimum} (got {v!r})")
            return default
        return v

    def number_at_least(self, raw: Mapping, key: str, path: str, minimum: float, default: Any,
                        strict: bool = False) -> Any:
        v = raw.get(key, default)
        if v is default:
            return v
        ok = _is_number(v) and (v > minimum if strict else v >= minimum)
        if not ok:
            self.bad(path, f"must be a number {'>' if strict else '>='} {minimum:g} (got {v!r})")
            return default
        return float(v)

    def parse(self, raw: Any, path: str, text: str) -> Space:
        if not isinstance(raw, dict):
            raise SpaceError([f"{self.label}: must be a mapping of keys "
                              f"({', '.join(TOP_KEYS)}) (got {type(raw).__name__})"])
        self.mapping(raw, "", TOP_KEYS)

        workload = self.workload_ = self.workload(raw)
        types = workload.knob_types() if workload else None
        method = raw.get("method", "tpe")
        if method not in METHODS:
            self.bad("method", f"unknown method (got {method!r}; allowed: {', '.join(METHODS)})")
        objectives = self.objectives(raw, workload)
        fixed = self.knob_values(raw.get("fixed"), "fixed", types)
        parameters = self.parameters(raw, types, method, fixed)
        baseline = self.knob_values(raw.get("baseline"), "baseline", types) or None
        early = self.early_stop(raw, len(objectives) > 1)
        budget = self.budget(raw)
        resources = self.resources(raw)
        seed = raw.get("seed", 0)
        if not _is_int(seed):
            self.bad("seed", f"must be an integer (got {seed!r})")
        if workload is not None and not self.problems:
            self.whole_configs(workload, fixed, baseline)
        if self.problems:
            raise SpaceError(self.problems)
        return Space(path=os.path.abspath(path), workload=raw["workload"], method=method,
                     objectives=tuple(objectives), parameters=tuple(parameters), fixed=fixed,
                     baseline=baseline, early_stop=early, budget=budget, resources=resources,
                     seed=seed, text=text)

    def workload(self, raw: Mapping) -> Workload | None:
        name = raw.get("workload")
        if name is None:
            self.bad("workload", f"required (allowed: {', '.join(workload_names())})")
            return None
        if not isinstance(name, str) or not is_known(name):
            self.bad("workload", f"unknown workload (got {name!r}; "
                                 f"allowed: {', '.join(workload_names())})")
            return None
        return get_workload(name)

    def objectives(self, raw: Mapping, workload: Workload | None) -> list[Objective]:
        metric = raw.get("metric")
        if metric is None:
            self.bad("metric", "required: {name: <metric>, goal: minimize|maximize}")
            return []
        items = metric if isinstance(metric, list) else [metric]
        if not items:
            self.bad("metric", "must name at least one metric")
        result = []
        for i, item in enumerate(items):
            key = f"metric[{i}]" if isinstance(metric, list) else "metric"
            item = self.mapping(item, key, ("name", "goal"))
            name, goal = item.get("name"), item.get("goal")
            if not isinstance(name, str):
                self.bad(f"{key}.name", f"required, a metric name (got {name!r})")
                continue
            if workload is not None and name not in workload.metrics:
                self.bad(f"{key}.name", f"workload {workload.name!r} does not report this metric "
                                        f"(got {name!r}; allowed: {', '.join(workload.metrics)})")
            if goal not in GOALS:
                self.bad(f"{key}.goal", f"must be one of {', '.join(GOALS)} (got {goal!r})")
                continue
            if name in {o.name for o in result}:
                self.bad(f"{key}.name", f"metric listed twice (got {name!r})")
            result.append(Objective(name, goal))
        return result

    def knob_values(self, raw: Any, key: str, types: Mapping[str, Any] | None) -> dict:
        values = self.mapping(raw, key, None)
        out = {}
        for name, value in values.items():
            if types is None:
                out[name] = value
            elif name not in types:
                self.bad(f"{key}.{name}", f"not a knob of this workload (allowed: "
                                          f"{', '.join(sorted(types))})")
            else:
                out[name] = self.coerce(f"{key}.{name}", name, value, types[name])
        return out

    def parameters(self, raw: Mapping, types: Mapping[str, Any] | None, method: str,
                   fixed: dict) -> list[Parameter]:
        specs = self.mapping(raw.get("parameters"), "parameters", None)
        if not specs:
            self.bad("parameters", "required: at least one parameter to search")
        params: list[Parameter] = []
        pending_when: list[tuple[str, Any]] = []
        for name, spec in specs.items():
            key = f"parameters.{name}"
            if types is not None and name not in types:
                self.bad(key, f"not a knob of this workload (allowed: {', '.join(sorted(types))})")
                continue
            if name in fixed:
                self.bad(key, "also set in fixed; a knob is either searched or fixed")
            spec = self.mapping(spec, key, PARAM_KEYS)
            annotation = types[name] if types is not None else None
            if "value" in spec and "values" not in spec and "distribution" not in spec:
                # W&B's constant: not searched, just fixed.
                if annotation is not None:
                    fixed[name] = self.coerce(f"{key}.value", name, spec["value"], annotation)
                continue
            dist = self.distribution(key, name, spec, annotation)
            if "when" in spec:
                pending_when.append((name, spec["when"]))
            if dist is not None:
                params.append(Parameter(name, dist))
        params = self.conditions(params, pending_when, types)
        if method == "grid":
            for p in params:
                if not isinstance(p.distribution, od.CategoricalDistribution):
                    self.bad(f"parameters.{p.name}", "grid search needs `values` for every "
                                                     "parameter (got a distribution)")
                if p.when:
                    self.bad(f"parameters.{p.name}.when", "conditional parameters are not "
                                                          "supported with method: grid")
        return params

    def coerce(self, key: str, name: str, value: Any, annotation: Any) -> Any:
        """The value as the knob's type, checked against the knob's domain (None if bad)."""
        try:
            value = coerce_knob(name, value, annotation)
        except ConfigError as e:
            self.bad(key, str(e).split(": ", 1)[-1])
            return None
        self.in_domain(key, name, value)
        return value

    def in_domain(self, key: str, name: str, value: Any) -> bool:
        domain: Domain | None = self.workload_.knob_domain(name) if self.workload_ else None
        if domain is None or value is None or domain.contains(value):
            return True
        self.bad(key, f"outside the domain of knob {name!r} (got {shown(value)}; "
                      f"allowed: {domain.describe()})")
        return False

    def distribution(self, key: str, name: str, spec: Mapping,
                     annotation: Any) -> od.BaseDistribution | None:
        kind = spec.get("distribution")
        if kind is None:
            kind = "categorical" if "values" in spec else None
        if kind not in DISTRIBUTIONS:
            self.bad(f"{key}.distribution" if "distribution" in spec else key,
                     f"unknown distribution (got {kind!r}; allowed: {', '.join(DISTRIBUTIONS)}; "
                     f"or give `values: [...]` or `value: x`)")
            return None
        if kind == "constant":
            self.bad(key, "use `value: x` for a constant")
            return None
        if kind == "categorical":
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                self.bad(f"{key}.values", f"must be a non-empty list (got {values!r})")
                return None
            choices = []
            for i, v in enumerate(values):
                if annotation is not None:
                    v = self.coerce(f"{key}.values[{i}]", name, v, annotation)
                choices.append(_encode_choice(v))
            if len(set(map(repr, choices))) != len(choices):
                self.bad(f"{key}.values", f"duplicate values (got {values!r})")
                return None
            return od.CategoricalDistribution(choices)
        lo, hi, q = spec.get("min"), spec.get("max"), spec.get("q")
        ok = True
        for bound, v in (("min", lo), ("max", hi)):
            if not _is_number(v):
                self.bad(f"{key}.{bound}", f"required, a number, for {kind} (got {v!r})")
                ok = False
        if not ok:
            return None
        if lo >= hi:
            self.bad(f"{key}", f"min must be < max (got min={lo}, max={hi})")
            return None
        if annotation is not None:
            # Optional[float] searches floats (None is only ever fixed or a baseline value)
            optional = typing.get_origin(annotation) is typing.Union
            base = [a for a in typing.get_args(annotation) if a is not type(None)][0] \
                if optional else annotation
            numeric_ok = base is float or (base is int and kind == "int_uniform")
            if not numeric_ok:
                allowed = "int_uniform or values" if base is int else "values"
                self.bad(f"{key}.distribution", f"knob {name!r} is {getattr(annotation, '__name__', annotation)}"
                                                f" (got {kind}; allowed: {allowed})")
                return None
        if kind == "log_uniform" and max(abs(lo), abs(hi)) > 700:  # exp() overflows float64
            self.bad(key, f"log_uniform takes natural-log exponents; |min|, |max| must be <= 700 "
                          f"(got min={shown(lo)}, max={shown(hi)})")
            return None
        low, high = (math.exp(lo), math.exp(hi)) if kind == "log_uniform" else (lo, hi)
        # Numeric domains are intervals: both bounds inside means every value is.
        if not (self.in_domain(f"{key}.min", name, low) & self.in_domain(f"{key}.max", name, high)):
            return None
        if kind == "uniform":
            return od.FloatDistribution(lo, hi)
        if kind == "q_uniform":
            if not _is_number(q) or q <= 0:
                self.bad(f"{key}.q", f"must be a number > 0 for q_uniform (got {q!r})")
                return None
            return od.FloatDistribution(lo, hi, step=q)
        if kind == "int_uniform":
            if not (_is_int(lo) and _is_int(hi)):
                self.bad(key, f"min and max must be integers for int_uniform (got {lo}, {hi})")
                return None
            return od.IntDistribution(lo, hi)
        if kind == "log_uniform_values":
            if lo <= 0:
                self.bad(f"{key}.min", f"must be > 0 for log_uniform_values (got {lo})")
                return None
            return od.FloatDistribution(lo, hi, log=True)
        # log_uniform: W&B semantics, min/max are natural-log exponents.
        return od.FloatDistribution(math.exp(lo), math.exp(hi), log=True)

    def conditions(self, params: list[Parameter], pending: list[tuple[str, Any]],
                   types: Mapping[str, Any] | None) -> list[Parameter]:
        by_name = {p.name: p for p in params}
        conditional = {name for name, _ in pending}
        for name, when in pending:
            key = f"parameters.{name}.when"
            if not isinstance(when, dict) or not when:
                self.bad(key, f"must be a mapping {{parameter: value}} (got {when!r})")
                continue
            resolved = {}
            for target, value in when.items():
                if target not in by_name:
                    self.bad(f"{key}.{target}", f"refers to a parameter that is not searched "
                                                f"(allowed: {', '.join(sorted(set(by_name) - {name}))})")
                    continue
                if target == name or target in conditional:
                    self.bad(f"{key}.{target}", "may only refer to an unconditional parameter")
                    continue
                dist = by_name[target].distribution
                if types is not None:
                    value = self.coerce(f"{key}.{target}", target, value, types[target])
                value = _encode_choice(value)
                if isinstance(dist, od.CategoricalDistribution) and value not in dist.choices:
                    self.bad(f"{key}.{target}", f"value never suggested (got {value!r}; "
                                                f"allowed: {list(dist.choices)})")
                resolved[target] = value
            if name in by_name:
                by_name[name] = dataclasses.replace(by_name[name], when=resolved)
        # Unconditional parameters first so a condition's target is always suggested before it.
        ordered = [by_name[p.name] for p in params]
        return [p for p in ordered if not p.when] + [p for p in ordered if p.when]

    def early_stop(self, raw: Mapping, multi: bool) -> EarlyStop | None:
        if raw.get("early_terminate") is None:
            return None
        spec = self.mapping(raw["early_terminate"], "early_terminate", EARLY_KEYS)
        if multi:
            self.bad("early_terminate", "not supported with several metrics (ASHA needs one "
                                        "objective); remove it or use a single metric")
        kind = spec.get("type", "asha")
        if kind not in EARLY_TYPES:
            self.bad("early_terminate.type", f"unknown type (got {shown(kind)}; allowed: "
                                             f"{', '.join(EARLY_TYPES)}; both run as ASHA)")
            kind = "asha"
        min_iter = self.int_at_least(spec, "min_iter", "early_terminate.min_iter", 1, 1)
        eta = self.int_at_least(spec, "eta", "early_terminate.eta", 2, 3)
        max_iter = self.int_at_least(spec, "max_iter", "early_terminate.max_iter", 1, None)
        if max_iter is not None and max_iter < min_iter:
            self.bad("early_terminate.max_iter", f"must be >= min_iter {min_iter} (got {max_iter})")
        return EarlyStop(min_iter=min_iter, eta=eta, max_iter=max_iter, requested=kind)

    def budget(self, raw: Mapping) -> Budget:
        spec = self.mapping(raw.get("budget"), "budget", BUDGET_KEYS)
        d = Budget()
        return Budget(
            trials=self.int_at_least(spec, "trials", "budget.trials", 1, d.trials),
            max_concurrent=self.int_at_least(spec, "max_concurrent", "budget.max_concurrent", 1,
                                             d.max_concurrent),
            time_limit_s=self.number_at_least(spec, "time_limit_s", "budget.time_limit_s", 0,
                                              d.time_limit_s, strict=True))

    def resources(self, raw: Mapping) -> Resources:
        spec = self.mapping(raw.get("resources"), "resources", RESOURCE_KEYS)
        d = Resources()
        return Resources(
            workers_per_trial=self.int_at_least(spec, "workers_per_trial",
                                                "resources.workers_per_trial", 1,
                                                d.workers_per_trial),
            cpus_per_worker=self.number_at_least(spec, "cpus_per_worker",
                                                 "resources.cpus_per_worker", 0,
                                                 d.cpus_per_worker, strict=True),
            gpus_per_worker=self.number_at_least(spec, "gpus_per_worker",
                                                 "resources.gpus_per_worker", 0,
                                                 d.gpus_per_worker))

    def whole_configs(self, workload: Workload, fixed: Mapping, baseline: Mapping | None) -> None:
        """Knob-level checks passed; the workload's own input checks (data directories)."""
        for label, overrides in (("fixed", fixed), ("baseline", {**fixed, **(baseline or {})})):
            try:
                cfg = workload.resolve(overrides)
            except ConfigError as e:
                self.bad(label, str(e))
                continue
            if workload.check is not None and label == "fixed":
                for problem in workload.check(cfg):
                    self.bad("fixed", problem)
        for name in workload.metrics:
            assert name not in TUNE_RESERVED, f"workload metric {name!r} clashes with Ray Tune"
