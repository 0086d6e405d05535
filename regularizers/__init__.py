"""Regularizers shared by the model packages (plain PyTorch: no Ray, no MLflow, no workloads)."""
