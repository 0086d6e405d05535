"""The training kit: typed knobs, the one training loop and the one CLI behind the contract.

A new model family is its knobs plus `setup(cfg, session) -> Trial` (model, optimizer, data,
one step, one evaluation); `make_workload` turns them into the contract's `Workload`.
See examples/custom_workload.py for a complete one.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from workloads.contract import Goal, Session, Workload
from workloads.knobs import (DISTINCT_POSITIVE_INTS, FINITE, ConfigError, EachIn, LoopKnobs,
                                 OneOf, above, at_least, between, knob)
from workloads.kit.loop import (StepResult, Trial, all_reduce_sums, any_rank, mix_seed,
                                per_worker_batch)
from workloads.kit.loop import train as train_loop


def make_workload(*, name: str, knobs: type, metrics: Mapping[str, Goal],
                  setup: Callable[[Any, Session], Trial], smoke: Mapping[str, Any] | None = None,
                  check: Callable[[Any], list[str]] | None = None,
                  input_errors: tuple[type[BaseException], ...] = (),
                  data_seed_knob: str | None = None,
                  metric_docs: Mapping[str, tuple[str, str]] | None = None) -> Workload:
    """A Workload whose `train` is the kit's loop around `setup`."""
    def train(config: Mapping[str, Any], session: Session) -> None:
        train_loop(workload, setup, config, session)

    workload = Workload(name=name, knobs=knobs, metrics=metrics, train=train,
                        smoke=dict(smoke or {}), check=check, input_errors=input_errors,
                        data_seed_knob=data_seed_knob, metric_docs=dict(metric_docs or {}))
    return workload


__all__ = ["ConfigError", "DISTINCT_POSITIVE_INTS", "EachIn", "FINITE", "LoopKnobs", "OneOf",
           "StepResult", "Trial", "above", "all_reduce_sums", "any_rank", "at_least", "between",
           "knob", "make_workload", "mix_seed", "per_worker_batch"]
