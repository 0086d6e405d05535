"""Result and config keys shared by the driver, the workers' session and the reporting side."""

# Reported by every trial each epoch: 1.0 once its loss became NaN/inf (objective set to worst).
DIVERGED = "diverged"
# Present (True) in the Tune config of the space's baseline trial.
BASELINE_TAG = "baseline"
