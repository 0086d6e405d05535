"""Temporal Eigenstate Networks in plain PyTorch (no Ray, no MLflow).

    config.py  TENConfig, presets, validation     scan.py   chunked scan, reference, one step
    ten.py     TEN layer and block                hten.py   hierarchical multi-scale layer
    model.py   TENLM: embedding, blocks, head, compute_loss, configure_optimizers; spectrum
"""
from ten_core.config import DECAY_INITS, PRESET_PARAMS, PRESETS, TENConfig, preset_names
from ten_core.model import TENLM, count_parameters, spectrum, spectrum_summary
from ten_core.scan import eigen_scan, eigen_scan_ref, eigen_step

__all__ = ["DECAY_INITS", "PRESETS", "PRESET_PARAMS", "TENConfig", "TENLM", "count_parameters",
           "eigen_scan", "eigen_scan_ref", "eigen_step", "preset_names", "spectrum",
           "spectrum_summary"]
