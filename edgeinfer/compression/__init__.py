"""Structured compression of PyTorch models: pruning, distillation, the report (``compress``)."""
