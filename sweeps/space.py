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

from sweeps.decision import Criterion
from sweeps.errors import SpaceError, clip
from sweeps.keys import trial_knobs
from workloads.contract import EPOCH, EPOCHS_KNOB, SEED_KNOB, ConfigError, Workload
from workloads.knobs import BATCH_KNOB, Domain, coerce_knob, format_knob, shown
from workloads.registry import get_workload, is_known, workload_names

SPACES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "search_spaces")

TOP_KEYS = ("workload", "method", "metric", "parameters", "fixed", "baseline", "early_terminate",
            "budget", "resources", "seed", "confirm", "decision", "name", "description")
CONFIRM_KEYS = ("finalists", "seeds", "seed_offset", "select_by")
DECISION_KEYS = ("confidence", "criteria")
CRITERION_KEYS = ("metric", "better_by", "not_worse_than", "relative")
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
# Input limits. A space file is a few hundred bytes; these bound what parsing and error
# reporting can cost (a YAML "billion laughs" of 1 KB expands to gigabytes) and reject sizes
# no cluster runs (`trials: 10000000`), each before Ray starts.
MAX_SPACE_BYTES = 256 * 1024
MAX_YAML_NODES = 10_000
MAX_YAML_DEPTH = 32
MAX_INT = 2**63 - 1              # any integer in a space file (torch, numpy and Optuna need int64)
MAX_TRIALS = 100_000             # budget.trials, budget.max_concurrent, --trials, --max-concurrent
MAX_WORKERS_PER_TRIAL = 4096
MAX_PER_WORKER = 1024            # CPUs or GPUs of one worker
MAX_TIME_LIMIT_S = 365 * 24 * 3600
MAX_SEED = 2**32 - 1             # Optuna's samplers seed numpy, which takes 0 .. 2**32-1
MAX_EPOCH_COUNT = 1_000_000      # early_terminate.min_iter / max_iter
MAX_ETA = 1000
# Keys Ray Tune adds to every result; a metric of the same name would be overwritten.
TUNE_RESERVED = ("pid", "hostname", "node_ip", "timestamp", "date", "done", "training_iteration",
                 "time_this_iter_s", "time_total_s", "time_since_restore", "trial_id",
                 "experiment_tag", "iterations_since_restore", "checkpoint_dir_name", "config")


@dataclass(frozen=True)
class Bound:
    """The allowed range of a numeric setting (budget, resources, seed; file key or flag)."""
    lo: float
    hi: float
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False

    def accepts(self, v: Any) -> bool:
        if not (_is_int(v) if self.integer else _is_number(v)):
            return False
        return ((v > self.lo if self.lo_open else v >= self.lo)
                and (v < self.hi if self.hi_open else v <= self.hi))

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        return (f"{kind} in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}"
                f"{')' if self.hi_open else ']'}")


RULES = {
    "trials": Bound(1, MAX_TRIALS, integer=True),
    "max_concurrent": Bound(1, MAX_TRIALS, integer=True),
    "time_limit_s": Bound(0, MAX_TIME_LIMIT_S, lo_open=True),
    "workers_per_trial": Bound(1, MAX_WORKERS_PER_TRIAL, integer=True),
    "cpus_per_worker": Bound(0, MAX_PER_WORKER, lo_open=True),
    "gpus_per_worker": Bound(0, MAX_PER_WORKER),
    "seed": Bound(0, MAX_SEED, integer=True),
    "min_iter": Bound(1, MAX_EPOCH_COUNT, integer=True),
    "max_iter": Bound(1, MAX_EPOCH_COUNT, integer=True),
    "eta": Bound(2, MAX_ETA, integer=True),
    "finalists": Bound(1, 20, integer=True),
    "seeds": Bound(2, 100, integer=True),
    "seed_offset": Bound(0, 1_000_000, integer=True),
    "confidence": Bound(0.5, 1, lo_open=True, hi_open=True),
}


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

    def max_t(self, epochs: int) -> int:
        return self.max_iter or epochs

    def rungs(self, epochs: int) -> list[int]:
        """The epochs where ASHA compares trials: min_iter · eta^k before max_t. Empty when
        min_iter leaves no rung before the end (then nothing can be stopped early)."""
        rungs, r = [], self.min_iter
        while r < self.max_t(epochs):
            rungs.append(r)
            r *= self.eta
        return rungs

    def describe(self, epochs: int) -> str:
        if not self.rungs(epochs):
            return f"none (min_iter {self.min_iter} leaves no rung before epoch {epochs})"
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
class Confirm:
    """Re-run the best `finalists` search trials and the baseline on `seeds` fresh seeds: the
    search's seed + seed_offset + 1 .. + seed_offset + seeds. A replication sets seed_offset to
    the seeds an earlier confirmation used: new seeds (and data)."""
    finalists: int = 2
    seeds: int = 3
    seed_offset: int = 0
    # None: finalists are the best search trials by the objective. A metric: the search trials
    # within every non-inferiority margin of `decision` (single-seed Δ vs the baseline trial),
    # best by this metric first — for an objective the regularizer can only cost (in-domain
    # fit), where "best by the objective" means "the least regularized".
    select_by: str | None = None
    # Finalists given by their knobs instead of chosen from this sweep's search: another
    # sweep's confirmed finalists ({"trial_id", "params"}, `--confirm-knobs-from`), so a control
    # arm confirms the same settings as its treatment arm and the two can be compared.
    given: tuple = ()
    given_from: str | None = None


@dataclass(frozen=True)
class Decision:
    """What the confirm runs must show for a GO (sweeps/decision.py)."""
    confidence: float
    criteria: tuple[Criterion, ...]


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
    confirm: Confirm | None = None
    decision: Decision | None = None

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
        return trial_knobs(self.get_workload(), self.fixed, params)

    def trial_knobs(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Every knob of a trial from Tune's config (searched values, maybe the baseline tag)."""
        return trial_knobs(self.get_workload(), self.fixed, config)

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
                 fixed: Mapping[str, Any] | None = None, finalists: int | None = None,
                 confirm_seeds: int | None = None,
                 confirm_seed_offset: int | None = None) -> "Space":
        """A copy with command-line overrides applied; SpaceError (flag names) if invalid."""
        problems = []
        for flag, value, rule in (("--trials", trials, RULES["trials"]),
                                  ("--max-concurrent", max_concurrent, RULES["max_concurrent"]),
                                  ("--workers-per-trial", workers_per_trial,
                                   RULES["workers_per_trial"]),
                                  ("--gpus-per-worker", gpus_per_worker, RULES["gpus_per_worker"]),
                                  ("--cpus-per-worker", cpus_per_worker, RULES["cpus_per_worker"]),
                                  ("--seed", seed, RULES["seed"]),
                                  ("--finalists", finalists, RULES["finalists"]),
                                  ("--confirm-seeds", confirm_seeds, RULES["seeds"]),
                                  ("--confirm-seed-offset", confirm_seed_offset,
                                   RULES["seed_offset"])):
            if value is not None and not rule.accepts(value):
                problems.append(f"{flag}: must be {rule.describe()} (got {shown(value)})")
        if (finalists or confirm_seeds or confirm_seed_offset is not None) and self.confirm is None:
            problems.append("--finalists/--confirm-seeds/--confirm-seed-offset: the space has no "
                            "`confirm:` stage")
        new_fixed = dict(self.fixed)
        smoke_keys = set()
        for key, value in (fixed or {}).items():
            if key in {p.name for p in self.parameters}:
                continue  # a searched knob stays searched; smoke overrides only what is fixed
            new_fixed[key] = value
            smoke_keys.add(key)
        try:
            self.get_workload().resolve(new_fixed)
        except ConfigError as e:
            problems.append(clip(f"{self.path}: fixed: {e}"))
        if problems:
            raise SpaceError(problems)
        # The DDP workers split every batch_size evenly: re-check with the flags applied.
        workers = workers_per_trial or self.resources.workers_per_trial
        source = ("--workers-per-trial" if workers_per_trial is not None
                  else "resources.workers_per_trial")
        fixed_key = (f"{BATCH_KNOB} (--smoke)" if BATCH_KNOB in smoke_keys
                     else f"fixed.{BATCH_KNOB}")
        label = os.path.basename(self.path)
        problems = [clip(f"{label}: {key}: {msg}")
                    for key, msg in batch_problems(self.get_workload(), self.parameters, new_fixed,
                                                   self.baseline, workers, source, fixed_key)]
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
        confirm = self.confirm and dataclasses.replace(
            self.confirm, finalists=finalists or self.confirm.finalists,
            seeds=confirm_seeds or self.confirm.seeds,
            seed_offset=(self.confirm.seed_offset if confirm_seed_offset is None
                         else confirm_seed_offset))
        return dataclasses.replace(self, budget=budget, resources=resources, fixed=new_fixed,
                                   seed=self.seed if seed is None else seed, confirm=confirm)


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
    raise SpaceError([f"{clip(name, 200)}: space file not found (looked at {shown(name, 200)} "
                      f"and in {SPACES_DIR})"])


def load_space(name: str) -> Space:
    """Read, check and parse a space file; SpaceError (one line per problem) if it is bad.

    Cheap checks come first, so a hostile or broken file costs little: its size before reading,
    UTF-8, and the YAML's shape (no anchors/aliases, bounded node count and depth) from the
    event stream, before any document is built.
    """
    path = resolve_space_path(name)
    label = clip(os.path.basename(path), 100)
    text = _read_text(path, label)
    return parse_space(_parse_yaml(text, label), path=path, text=text)


def _read_text(path: str, label: str) -> str:
    try:
        size = os.path.getsize(path)
        if size <= MAX_SPACE_BYTES:
            with open(path, "rb") as f:
                data = f.read(MAX_SPACE_BYTES + 1)
            size = len(data)
    except OSError as e:
        raise SpaceError([f"{label}: cannot read the file ({clip(e.strerror or e, 200)})"]) from None
    if size > MAX_SPACE_BYTES:
        raise SpaceError([f"{label}: file too large ({size} bytes; a space file may have at most "
                          f"{MAX_SPACE_BYTES} bytes)"])
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # a BOM is allowed, not required
    except UnicodeDecodeError as e:
        raise SpaceError([f"{label}: not UTF-8 text (byte 0x{data[e.start]:02x} at byte offset "
                          f"{e.start}); save the file as UTF-8"]) from None


def _parse_yaml(text: str, label: str) -> Any:
    try:
        _check_yaml_shape(text, label)
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}"
        elif isinstance(e, yaml.reader.ReaderError):
            where = f" at character {e.position}"
        else:
            where = ""
        problem = getattr(e, "problem", None) or getattr(e, "context", None) or e
        if isinstance(e, yaml.reader.ReaderError) and isinstance(e.character, int):
            problem = f"character #x{e.character:04x}: {e.reason}"
        raise SpaceError([f"{label}: not valid YAML{where}: {clip(problem, 200)}"]) from None
    except (ValueError, OverflowError) as e:  # a constructor: `2001-13-45`, a 5000-digit int
        raise SpaceError([f"{label}: not valid YAML: a value cannot be read "
                          f"({clip(e, 200)})"]) from None


_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)
_OPEN_EVENTS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSE_EVENTS = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _check_yaml_shape(text: str, label: str) -> None:
    """Walk the YAML event stream (no document is built) and refuse anchors/aliases, more than
    MAX_YAML_NODES nodes or nesting deeper than MAX_YAML_DEPTH. Aliases are how a 1 KB file
    becomes a structure of 10**9 nodes (the "billion laughs"), whose echo in an error message
    never ends; a space file has no use for them, so they are refused outright."""
    nodes = depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise SpaceError([f"{label}: line {event.start_mark.line + 1}: YAML anchors and "
                              f"aliases (&name, *name, <<: *name) are not allowed in a space "
                              f"file; write the values out"])
        if isinstance(event, _NODE_EVENTS):
            nodes += 1
            if nodes > MAX_YAML_NODES:
                raise SpaceError([f"{label}: line {event.start_mark.line + 1}: too many YAML "
                                  f"nodes (a space file may have at most {MAX_YAML_NODES})"])
        if isinstance(event, _OPEN_EVENTS):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise SpaceError([f"{label}: line {event.start_mark.line + 1}: YAML nested too "
                                  f"deeply (at most {MAX_YAML_DEPTH} levels)"])
        elif isinstance(event, _CLOSE_EVENTS):
            depth -= 1


def parse_space(raw: Any, *, path: str, text: str = "") -> Space:
    return _Parser(clip(os.path.basename(path), 100)).parse(raw, path, text)


# --------------------------------------------------------------------------------------------
# The parser: collects every problem, raises once
# --------------------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an int beyond float range
        return False


def _num(x: float) -> str:
    """A bound as written: 4294967295, not 4.29497e+09."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _key(name: Any) -> str:
    """A user-written key inside a key path, bounded (a key can be a 100 KB string too)."""
    return clip(name, 60)


def _big_ints(raw: Any, path: str = "") -> list[tuple[str, int]]:
    """(key path, value) of every integer in the document outside int64."""
    if _is_int(raw):
        return [(path or "(top)", raw)] if abs(raw) > MAX_INT else []
    items = (raw.items() if isinstance(raw, dict) else
             enumerate(raw) if isinstance(raw, list) else ())
    found = []
    for k, v in items:
        sub = f"{path}[{k}]" if isinstance(raw, list) else (f"{path}.{_key(k)}" if path else _key(k))
        found += _big_ints(v, sub)
    return found


def batch_problems(workload: Workload, parameters: tuple[Parameter, ...] | list[Parameter],
                   fixed: Mapping[str, Any], baseline: Mapping[str, Any] | None, workers: int,
                   workers_source: str, fixed_key: str = f"fixed.{BATCH_KNOB}"
                   ) -> list[tuple[str, str]]:
    """(key, problem) for every batch_size a trial could run with that `workers` DDP workers
    cannot split evenly (the training kit gives each worker batch_size / workers)."""
    if not _is_int(workers) or workers <= 1 or BATCH_KNOB not in workload.knob_types():
        return []
    tail = (f"divisible by {workers} workers ({workers_source}); each DDP worker gets "
            f"{BATCH_KNOB} / {workers}")
    out = []
    searched = next((p for p in parameters if p.name == BATCH_KNOB), None)
    if searched is not None:
        d = searched.distribution
        if isinstance(d, od.CategoricalDistribution):
            bad = [c for c in d.choices if _is_int(c) and c % workers]
            if bad:
                out.append((f"parameters.{BATCH_KNOB}.values", f"{shown(bad)} not {tail}"))
        elif isinstance(d, od.IntDistribution) and (d.low % workers or d.step % workers):
            out.append((f"parameters.{BATCH_KNOB}",
                        f"int_uniform suggests every integer in [{d.low}, {d.high}], not all "
                        f"{tail}; use values: [...] with multiples of {workers}"))
    else:
        value = fixed.get(BATCH_KNOB)
        key = fixed_key
        if BATCH_KNOB not in fixed:
            value = workload.public_values(workload.defaults).get(BATCH_KNOB)
            key = f"{BATCH_KNOB} (workload default)"
        if _is_int(value) and value % workers:
            out.append((key, f"{value} is not {tail}"))
    value = (baseline or {}).get(BATCH_KNOB)
    if _is_int(value) and value % workers:
        out.append((f"baseline.{BATCH_KNOB}", f"{value} is not {tail}"))
    return out


def _encode_choice(v: Any) -> Any:
    """Optuna categoricals hold None/bool/int/float/str: lists travel as "1,2,4"."""
    return format_knob(v) if isinstance(v, (list, tuple)) else v


class _Parser:
    def __init__(self, label: str):
        self.label = label
        self.problems: list[str] = []
        self.workload_: Workload | None = None

    def bad(self, key: str, msg: str) -> None:
        # Every echoed value goes through shown()/_key(); the clip is the backstop (a
        # workload's own check, say, naming a long path).
        self.problems.append(clip(f"{self.label}: {key}: {msg}"))

    def mapping(self, raw: Any, key: str, allowed: tuple[str, ...] | None) -> dict:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.bad(key, f"must be a mapping (got {shown(raw)})")
            return {}
        if allowed is not None:
            for k in raw:
                if k not in allowed:
                    self.bad(f"{key}.{_key(k)}" if key else _key(k),
                             f"unknown key (allowed: {', '.join(allowed)})")
        return raw

    def setting(self, raw: Mapping, key: str, path: str, default: Any) -> Any:
        """A numeric setting checked against RULES[key] (its range is in the message)."""
        if key not in raw or (raw[key] is None and default is None):
            return default
        v, rule = raw[key], RULES[key]
        if not rule.accepts(v):
            self.bad(path, f"must be {rule.describe()} (got {shown(v)})")
            return default
        return v if rule.integer else float(v)

    def parse(self, raw: Any, path: str, text: str) -> Space:
        if not isinstance(raw, dict):
            raise SpaceError([f"{self.label}: must be a mapping of keys "
                              f"({', '.join(TOP_KEYS)}) (got {type(raw).__name__})"])
        big = _big_ints(raw)
        if big:  # nothing downstream (float(), torch, numpy, Optuna) takes these
            raise SpaceError([clip(f"{self.label}: {key}: integer too large (got an integer of "
                                   f"{v.bit_length()} bits; allowed: |n| <= 2**63-1)")
                              for key, v in big])
        self.mapping(raw, "", TOP_KEYS)

        workload = self.workload_ = self.workload(raw)
        types = workload.knob_types() if workload else None
        method = raw.get("method", "tpe")
        if method not in METHODS:
            self.bad("method", f"unknown method (got {shown(method)}; allowed: "
                               f"{', '.join(METHODS)})")
        objectives = self.objectives(raw, workload)
        fixed = self.knob_values(raw.get("fixed"), "fixed", types)
        parameters = self.parameters(raw, types, method, fixed)
        baseline = self.knob_values(raw.get("baseline"), "baseline", types) or None
        early = self.early_stop(raw, len(objectives) > 1)
        budget = self.budget(raw)
        resources = self.resources(raw)
        seed = self.setting(raw, "seed", "seed", 0)
        if workload is not None:
            for key, problem in batch_problems(workload, parameters, fixed, baseline,
                                               resources.workers_per_trial,
                                               "resources.workers_per_trial"):
                self.bad(key, problem)
        confirm, decision = self.confirmation(raw, workload, objectives, parameters, baseline)
        if workload is not None and not self.problems:
            self.whole_configs(workload, fixed, baseline)
        if self.problems:
            raise SpaceError(self.problems)
        return Space(path=os.path.abspath(path), workload=raw["workload"], method=method,
                     objectives=tuple(objectives), parameters=tuple(parameters), fixed=fixed,
                     baseline=baseline, early_stop=early, budget=budget, resources=resources,
                     seed=seed, text=text, confirm=confirm, decision=decision)

    def confirmation(self, raw: Mapping, workload: Workload | None,
                     objectives: list[Objective], parameters: list[Parameter],
                     baseline: Mapping | None) -> tuple[Confirm | None, Decision | None]:
        """`confirm` and `decision`. Without `decision.criteria` the confirm runs test the
        objective for superiority (better_by: 0)."""
        if raw.get("confirm") is None:
            if raw.get("decision") is not None:
                self.bad("decision", "needs `confirm: {finalists: k, seeds: n}`: the decision "
                                     "is made on the confirmation runs")
            return None, None
        spec = self.mapping(raw["confirm"], "confirm", CONFIRM_KEYS)
        d = Confirm()
        select_by = spec.get("select_by")
        if select_by is not None and (not isinstance(select_by, str)
                                      or (workload is not None
                                          and select_by not in workload.metrics)):
            known = ", ".join(sorted(workload.metrics)) if workload is not None else ""
            self.bad("confirm.select_by", f"not a metric the workload reports (got "
                                          f"{shown(select_by)}; allowed: {known})")
            select_by = None
        confirm = Confirm(self.setting(spec, "finalists", "confirm.finalists", d.finalists),
                          self.setting(spec, "seeds", "confirm.seeds", d.seeds),
                          self.setting(spec, "seed_offset", "confirm.seed_offset", d.seed_offset),
                          select_by)
        if not baseline:
            self.bad("confirm", "needs a `baseline`: finalists are confirmed against it")
        data_seed = workload.data_seed_knob if workload is not None else None
        for knob in (SEED_KNOB, data_seed):
            if knob and knob in {p.name for p in parameters}:
                self.bad(f"parameters.{knob}", "cannot be searched with `confirm`: the "
                                               f"confirmation runs set the {knob}")
            if knob and baseline and knob in baseline:
                # else the search's Δ would compare runs on other seeds/data, and the confirm
                # runs would silently replace the value
                self.bad(f"baseline.{knob}", "cannot be set with `confirm`: the baseline runs "
                                             f"on the search trials' {knob}, the confirmation "
                                             f"runs set it")
        dspec = self.mapping(raw.get("decision"), "decision", DECISION_KEYS)
        confidence = self.setting(dspec, "confidence", "decision.confidence", 0.95)
        goals = dict(workload.metrics) if workload is not None else {}
        items = dspec.get("criteria")
        if items is None and objectives:
            items = [{"metric": objectives[0].name, "better_by": 0.0}]
        if not isinstance(items, list) or not items:
            self.bad("decision.criteria", f"must be a non-empty list of {{metric, better_by | "
                                          f"not_worse_than, relative}} (got {shown(items)})")
            return confirm, None
        criteria = []
        for i, item in enumerate(items):
            c = self.criterion(item, f"decision.criteria[{i}]", goals, workload is not None)
            if c is not None:
                criteria.append(c)
        return confirm, Decision(confidence, tuple(criteria))

    def criterion(self, item: Any, key: str, goals: Mapping[str, str],
                  known: bool) -> Criterion | None:
        spec = self.mapping(item, key, CRITERION_KEYS)
        metric = spec.get("metric")
        if not isinstance(metric, str) or (known and metric not in goals):
            self.bad(f"{key}.metric", f"not a metric the workload reports (got {shown(metric)}; "
                                      f"allowed: {', '.join(goals) or 'a metric name'})")
            return None
        margins = [k for k in ("better_by", "not_worse_than") if k in spec]
        if len(margins) != 1:
            self.bad(key, "give exactly one of better_by (superiority) or not_worse_than "
                          f"(non-inferiority) (got {', '.join(margins) or 'neither'})")
            return None
        margin = spec[margins[0]]
        if not _is_number(margin) or margin < 0:
            self.bad(f"{key}.{margins[0]}", f"must be a number >= 0 (got {shown(margin)})")
            return None
        relative = spec.get("relative", False)
        if not isinstance(relative, bool):
            self.bad(f"{key}.relative", f"must be true or false (got {shown(relative)})")
            return None
        return Criterion(metric=metric, margin=float(margin), relative=relative,
                         kind="superiority" if margins[0] == "better_by" else "non_inferiority",
                         goal=goals.get(metric, "maximize"))

    def workload(self, raw: Mapping) -> Workload | None:
        name = raw.get("workload")
        if name is None:
            self.bad("workload", f"required (allowed: {', '.join(workload_names())})")
            return None
        if not isinstance(name, str) or not is_known(name):
            self.bad("workload", f"unknown workload (got {shown(name)}; "
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
                self.bad(f"{key}.name", f"required, a metric name (got {shown(name)})")
                continue
            if workload is not None and name not in workload.metrics:
                self.bad(f"{key}.name", f"workload {workload.name!r} does not report this metric "
                                        f"(got {shown(name)}; allowed: "
                                        f"{', '.join(workload.metrics)})")
            if goal not in GOALS:
                self.bad(f"{key}.goal", f"must be one of {', '.join(GOALS)} (got {shown(goal)})")
                continue
            if name in {o.name for o in result}:
                self.bad(f"{key}.name", f"metric listed twice (got {shown(name)})")
            result.append(Objective(name, goal))
        return result

    def knob_values(self, raw: Any, key: str, types: Mapping[str, Any] | None) -> dict:
        values = self.mapping(raw, key, None)
        out = {}
        for name, value in values.items():
            if types is None:
                out[name] = value
            elif name not in types:
                self.bad(f"{key}.{_key(name)}", f"not a knob of this workload (allowed: "
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
            key = f"parameters.{_key(name)}"
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
                     f"unknown distribution (got {shown(kind)}; allowed: {', '.join(DISTRIBUTIONS)}; "
                     f"or give `values: [...]` or `value: x`)")
            return None
        if kind == "constant":
            self.bad(key, "use `value: x` for a constant")
            return None
        if kind == "categorical":
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                self.bad(f"{key}.values", f"must be a non-empty list (got {shown(values)})")
                return None
            choices = []
            for i, v in enumerate(values):
                if annotation is not None:
                    v = self.coerce(f"{key}.values[{i}]", name, v, annotation)
                choices.append(_encode_choice(v))
            if len(set(map(repr, choices))) != len(choices):
                self.bad(f"{key}.values", f"duplicate values (got {shown(values)})")
                return None
            return od.CategoricalDistribution(choices)
        lo, hi, q = spec.get("min"), spec.get("max"), spec.get("q")
        ok = True
        for bound, v in (("min", lo), ("max", hi)):
            if not _is_number(v):
                self.bad(f"{key}.{bound}", f"required, a number, for {kind} (got {shown(v)})")
                ok = False
        if not ok:
            return None
        if lo >= hi:
            self.bad(f"{key}", f"min must be < max (got min={shown(lo)}, max={shown(hi)})")
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
                self.bad(f"{key}.q", f"must be a number > 0 for q_uniform (got {shown(q)})")
                return None
            return od.FloatDistribution(lo, hi, step=q)
        if kind == "int_uniform":
            if not (_is_int(lo) and _is_int(hi)):
                self.bad(key, f"min and max must be integers for int_uniform "
                              f"(got {shown(lo)}, {shown(hi)})")
                return None
            return od.IntDistribution(lo, hi)
        if kind == "log_uniform_values":
            if lo <= 0:
                self.bad(f"{key}.min", f"must be > 0 for log_uniform_values (got {shown(lo)})")
                return None
            return od.FloatDistribution(lo, hi, log=True)
        # log_uniform: W&B semantics, min/max are natural-log exponents.
        return od.FloatDistribution(math.exp(lo), math.exp(hi), log=True)

    def conditions(self, params: list[Parameter], pending: list[tuple[str, Any]],
                   types: Mapping[str, Any] | None) -> list[Parameter]:
        by_name = {p.name: p for p in params}
        conditional = {name for name, _ in pending}
        for name, when in pending:
            key = f"parameters.{_key(name)}.when"
            if not isinstance(when, dict) or not when:
                self.bad(key, f"must be a mapping {{parameter: value}} (got {shown(when)})")
                continue
            resolved = {}
            for target, value in when.items():
                if target not in by_name:
                    self.bad(f"{key}.{_key(target)}", f"refers to a parameter that is not searched "
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
                    self.bad(f"{key}.{target}", f"value never suggested (got {shown(value)}; "
                                                f"allowed: {shown(list(dist.choices), 200)})")
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
        min_iter = self.setting(spec, "min_iter", "early_terminate.min_iter", 1)
        eta = self.setting(spec, "eta", "early_terminate.eta", 3)
        max_iter = self.setting(spec, "max_iter", "early_terminate.max_iter", None)
        if max_iter is not None and max_iter < min_iter:
            self.bad("early_terminate.max_iter", f"must be >= min_iter {min_iter} (got {max_iter})")
        return EarlyStop(min_iter=min_iter, eta=eta, max_iter=max_iter, requested=kind)

    def budget(self, raw: Mapping) -> Budget:
        spec = self.mapping(raw.get("budget"), "budget", BUDGET_KEYS)
        d = Budget()
        return Budget(**{key: self.setting(spec, key, f"budget.{key}", getattr(d, key))
                         for key in BUDGET_KEYS})

    def resources(self, raw: Mapping) -> Resources:
        spec = self.mapping(raw.get("resources"), "resources", RESOURCE_KEYS)
        d = Resources()
        return Resources(**{key: self.setting(spec, key, f"resources.{key}", getattr(d, key))
                            for key in RESOURCE_KEYS})

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
