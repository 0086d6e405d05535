"""Config keys shared by the driver, the searcher and the reporting side.

The per-epoch report keys (`EPOCH`, `DIVERGED`) belong to the workload contract
(workloads/contract.py) and are re-exported here for the sweep modules.
"""
from workloads.contract import DIVERGED, EPOCH  # noqa: F401

# Present (True) in the Tune config of the space's baseline trial.
BASELINE_TAG = "baseline"
# In the Tune config of a confirmation run: the search trial it confirms, or "baseline".
CONFIRM_OF = "confirm_of"
