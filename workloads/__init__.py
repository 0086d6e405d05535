"""Training entries (one per model family) behind the contract in `workloads/contract.py`."""
