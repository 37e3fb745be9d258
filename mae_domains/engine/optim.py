"""The engine's optimizer and schedule: re-exported from :mod:`mae_domains.optim`, shared with evaluation."""

from mae_domains.optim import apply_lr, build_optimizer, effective_lr, lr_at, param_groups

__all__ = ["apply_lr", "build_optimizer", "effective_lr", "lr_at", "param_groups"]
