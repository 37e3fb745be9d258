"""Pretraining engine: seeded, exactly resumable, skip-and-replace, distributed."""

from mae_domains.engine.trainer import PretrainResult, TrainingStopped, pretrain

__all__ = ["PretrainResult", "TrainingStopped", "pretrain"]
