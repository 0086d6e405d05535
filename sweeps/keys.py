"""Config keys shared by the driver, the searcher and the reporting side.

The per-epoch report keys (`EPOCH`, `DIVERGED`) belong to the workload contract
(workloads/contract.py) and are re-exported here for the sweep modules.
"""
from __future__ import annotations

from typing import Any, Mapping

from workloads.contract import DIVERGED, EPOCH, Workload  # noqa: F401

# Present (True) in the Tune config of the space's baseline trial.
BASELINE_TAG = "baseline"
# In the Tune config of a confirmation run: the search trial it confirms, or "baseline".
CONFIRM_OF = "confirm_of"


def trial_knobs(workload: Workload, fixed: Mapping[str, Any],
                config: Mapping[str, Any]) -> dict[str, Any]:
    """Every knob of one trial by public name: workload defaults < the space's fixed values <
    Tune's config (its searched values; the sweep's own tags above are not knobs). Here, not
    on the space, because the per-trial driver needs it without the space parser's imports."""
    params = {k: v for k, v in config.items() if k not in (BASELINE_TAG, CONFIRM_OF)}
    return workload.public_values(workload.resolve({**fixed, **params}))
