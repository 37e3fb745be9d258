"""The adapter as fine-tuning's training loader sees it: its ``finetune_transform`` with the protocol's settings.

:class:`FinetuneTransformReader` wraps an adapter for :func:`mae_domains.data.loaders.evaluation_loader`:
training transforms go to ``adapter.finetune_transform(sample, seed, stats, settings)`` (by default the
pretraining transform; the medical adapters add RandAugment-style ops of magnitude
``randaugment_magnitude``), evaluation transforms and everything else to the adapter itself.
"""

from __future__ import annotations

from typing import Any, Mapping

from mae_domains.data.sample import NormStats, Sample


class FinetuneTransformReader:
    """An adapter whose training transform is its fine-tuning transform for ``settings`` (picklable)."""

    def __init__(self, adapter: Any, settings: Mapping[str, Any]) -> None:
        self.adapter = adapter
        self.settings = dict(settings)

    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample:
        if not train:
            return self.adapter.transform(sample, seed, False, stats)
        hook = getattr(self.adapter, "finetune_transform", None)
        if hook is None:  # a duck-typed adapter without the hook: its training transform
            return self.adapter.transform(sample, seed, True, stats)
        return hook(sample, seed, stats, dict(self.settings))

    def __getattr__(self, name: str) -> Any:
        if name in ("adapter", "settings"):  # not set yet (unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.adapter, name)

    def __getstate__(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.adapter = state["adapter"]
        self.settings = state["settings"]
