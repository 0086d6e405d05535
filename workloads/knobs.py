"""Typed knobs: one plain dataclass per workload, each field a knob with its valid domain.

    @dataclass
    class MyKnobs(LoopKnobs):
        lam: float = knob(0.0, FINITE, alias="lambda", help="weight of the regularizer")
        width: int = knob(16, at_least(1))
        scales: list[int] = knob([1, 2], DISTINCT_POSITIVE_INTS)

Code reads `cfg.lam`; users (space files, `--set`, MLflow params) see the *public* name: the
alias where there is one (`lambda` is a Python keyword, so it cannot be a field name), else the
field name. A domain says which values a knob accepts, so the space parser can reject a bad
choice or an out-of-range bound before any Ray time is spent. Domains of numbers are intervals
(convex), so checking both bounds of a searched range checks every value in it.

Every problem is collected and raised at once as one `ConfigError`; messages never echo more
than a short prefix of a value (`shown`).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional


class ConfigError(ValueError):
    """Knob values a workload cannot run with; the message names each knob and what is allowed."""


def shown(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters: error text never echoes unbounded input."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# Domains
# --------------------------------------------------------------------------------------------
class Domain:
    """The values a knob accepts. `describe()` reads like "must be >= 0"."""

    def contains(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def invalid_example(self) -> Any:
        """A value of the knob's type outside the domain (table-driven tests use it)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Interval(Domain):
    """Numbers between lo and hi (None: unbounded), each end open or closed; NaN/inf never."""
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return False
        return True

    def describe(self) -> str:
        if self.lo is None and self.hi is None:
            return "finite"
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return (f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}"
                f"{')' if self.hi_open else ']'}")

    def invalid_example(self) -> Any:
        if self.lo is not None:
            return self.lo - 1 if not self.lo_open else self.lo
        if self.hi is not None:
            return self.hi + 1 if not self.hi_open else self.hi
        return math.inf


def at_least(lo: float) -> Interval:
    return Interval(lo=lo)


def above(lo: float) -> Interval:
    return Interval(lo=lo, lo_open=True)


def between(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Interval:
    return Interval(lo, hi, lo_open, hi_open)


FINITE = Interval()


@dataclass(frozen=True)
class OneOf(Domain):
    choices: tuple

    def contains(self, value: Any) -> bool:
        return value in self.choices

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.choices))

    def invalid_example(self) -> Any:
        return "not-" + str(self.choices[0])


@dataclass(frozen=True)
class EachIn(Domain):
    """A non-empty list whose items all lie in `item` (and are distinct, if asked)."""
    item: Domain
    distinct: bool = False

    def contains(self, value: Any) -> bool:
        if not isinstance(value, (list, tuple)) or not value:
            return False
        if self.distinct and len(set(value)) != len(value):
            return False
        return all(self.item.contains(v) for v in value)

    def describe(self) -> str:
        return (f"a non-empty list of {'distinct ' if self.distinct else ''}values each "
                f"{self.item.describe()}")

    def invalid_example(self) -> Any:
        return [self.item.invalid_example()]


DISTINCT_POSITIVE_INTS = EachIn(Interval(lo=1), distinct=True)


# --------------------------------------------------------------------------------------------
# Declaring knobs
# --------------------------------------------------------------------------------------------
def knob(default: Any, domain: Optional[Domain] = None, *, alias: Optional[str] = None,
         help: str = "") -> Any:
    """A dataclass field that is a knob: its default, its domain, its public name."""
    metadata = {"domain": domain, "alias": alias, "help": help}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# The LoopKnobs field the training loop splits over the DDP workers (batch_size / workers each),
# so it must be divisible by the worker count; the sweep's space parser checks that before Ray.
BATCH_KNOB = "batch_size"


@dataclass
class LoopKnobs:
    """The knobs the shared training loop (`workloads/kit/loop.py`) reads. A workload's knob
    dataclass subclasses this and may redeclare a field to change its default."""
    epochs: int = knob(3, at_least(1), help="training epochs (ASHA's max_t; 'finished')")
    steps_per_epoch: int = knob(0, at_least(0), help="cap on steps per epoch; 0 = full pass")
    batch_size: int = knob(32, at_least(1), help="GLOBAL batch; W workers get batch_size/W each")
    seed: int = knob(0, help="model init, data order, probes; confirmation runs vary it")


def public_name(f: dataclasses.Field) -> str:
    return f.metadata.get("alias") or f.name


def fields_by_public_name(knobs: type) -> dict[str, dataclasses.Field]:
    return {public_name(f): f for f in dataclasses.fields(knobs)}


def knob_types(knobs: type) -> dict[str, Any]:
    """{public name: annotated type}."""
    hints = typing.get_type_hints(knobs)
    return {public_name(f): hints[f.name] for f in dataclasses.fields(knobs)}


def knob_domain(knobs: type, name: str) -> Optional[Domain]:
    return fields_by_public_name(knobs)[name].metadata.get("domain")


def public_values(cfg: Any) -> dict[str, Any]:
    """{public name: value} of a knob dataclass instance (what MLflow and CSVs show)."""
    return {public_name(f): getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def domain_problem(name: str, value: Any, domain: Optional[Domain]) -> Optional[str]:
    """One line if `value` (already coerced) is outside the knob's domain; None is always
    allowed for Optional knobs (their domain constrains the non-None values)."""
    if domain is None or value is None or domain.contains(value):
        return None
    return f"knob {name!r}: must be {domain.describe()} (got {shown(value)})"


def resolve(knobs: type, overrides: Mapping[str, Any], base: Any = None) -> Any:
    """`base` (default: the knob defaults) with public-name `overrides` coerced, checked and
    applied; ConfigError listing every problem."""
    fields = fields_by_public_name(knobs)
    types = knob_types(knobs)
    problems: list[str] = []
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        problems.append(f"unknown knob(s) {shown(unknown)}; allowed: {', '.join(sorted(fields))}")
    values = {}
    for name, value in overrides.items():
        if name not in fields:
            continue
        try:
            values[fields[name].name] = coerce_knob(name, value, types[name])
        except ConfigError as e:
            problems.append(str(e))
    cfg = dataclasses.replace(base if base is not None else knobs(), **values)
    for name, f in fields.items():
        p = domain_problem(name, getattr(cfg, f.name), f.metadata.get("domain"))
        if p:
            problems.append(p)
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg


def coerce_knob(name: str, value: Any, annotation: Any) -> Any:
    """Coerce a config value (YAML, MLflow string, Optuna suggestion, --set) to the knob's type.

    Lists of numbers also come as "1,2,4" strings: that is how sweeps encode list choices so
    Optuna sees a plain categorical and MLflow shows a readable parameter.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    try:
        if annotation is bool:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if isinstance(value, bool):
                return value
            raise TypeError
        if annotation in (int, float):
            if isinstance(value, bool):
                raise TypeError
            if annotation is int and isinstance(value, float) and not value.is_integer():
                raise TypeError
            return annotation(value)
        if annotation is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if origin in (list, tuple) and args and args[0] in (int, float):
            if isinstance(value, str):
                value = [args[0](p) for p in value.split(",") if p.strip()]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            items = [coerce_knob(name, v, args[0]) for v in value]
            return tuple(items) if origin is tuple else items
        if origin is typing.Union and type(None) in args:  # Optional[X]
            if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
                return None
            inner = [a for a in args if a is not type(None)][0]
            return coerce_knob(name, value, inner)
    except (TypeError, ValueError, OverflowError):
        pass
    else:
        return value
    raise ConfigError(f"knob {name!r}: expected {_type_name(annotation)} (got {shown(value)})")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def format_knob(value: Any) -> str:
    """The flat, readable form of a knob value (MLflow params, CSV): lists as "1,2,4"."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def describe_knobs(knobs: type) -> Iterable[str]:
    """One line per knob: public name, type, default, domain, help (for --help texts)."""
    types = knob_types(knobs)
    defaults = public_values(knobs())
    for name, f in fields_by_public_name(knobs).items():
        domain = f.metadata.get("domain")
        extra = f"  ({domain.describe()})" if domain else ""
        yield (f"  {name} = {format_knob(defaults[name])}  [{_type_name(types[name])}]{extra}"
               f"{'  ' + f.metadata['help'] if f.metadata.get('help') else ''}")
