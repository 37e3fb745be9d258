"""The adapter contract: what a plugin author writes to bring a modality to mae-domains.

An adapter is a class with a registered ``name`` (``family.kind``) and an ``api_version``. It lists
the user's files, reads them into :class:`~mae_domains.data.Sample`, augments and normalizes them,
builds the MAE model for its token grid, and knows how to embed, evaluate and render. Register it in
your distribution's ``pyproject.toml``::

    [project.entry-points."mae_domains.adapters"]
    "myfield.mykind" = "my_package.adapter:MyAdapter"
"""

from __future__ import annotations

import glob
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from mae_domains import ADAPTER_API_VERSION
from mae_domains.data.sample import NormStats, RunningStats, Sample

if TYPE_CHECKING:
    from mae_domains.config import MaskConfig, ModelConfig


class Adapter(ABC):
    """Base class of every adapter. Subclasses set ``name`` and implement the abstract hooks.

    ``options`` are adapter-specific settings from the config's ``data.options`` section
    (e.g. ``img_size``, ``channels``, band groups); unknown options are an error.
    """

    name: ClassVar[str] = ""
    api_version: ClassVar[str] = ADAPTER_API_VERSION
    summary: ClassVar[str] = ""
    default_mask_ratio: ClassVar[float] = 0.75
    evaluation_protocols: ClassVar[tuple[str, ...]] = ("knn", "linear_probe", "finetune")
    file_patterns: ClassVar[tuple[str, ...]] = ("*",)
    option_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            from mae_domains.config import suggest

            hints = "; ".join(f"{k!r}{suggest(k, self.option_defaults)}" for k in unknown)
            raise ValueError(f"adapter {self.name}: unknown option(s) {hints}")
        self.options = {**self.option_defaults, **options}
        from mae_domains.config import RunConfig

        self.config = RunConfig(adapter=self.name)

    def bind(self, config: Any) -> "Adapter":
        """Attach the run configuration (model input size, channels, mask settings) before use."""
        self.config = config
        return self

    # ----- loading -------------------------------------------------------------------------
    def discover(self, sources: Sequence[str | os.PathLike]) -> list[Any]:
        """Sample references for paths, globs or folders (searched recursively by ``file_patterns``)."""
        refs: list[Any] = []
        for source in sources:
            path = Path(source)
            if path.is_dir():
                found = sorted({p for pat in self.file_patterns for p in path.rglob(pat) if p.is_file()})
                refs.extend(found)
            elif path.is_file():
                refs.append(path)
            else:
                matches = sorted(Path(p) for p in glob.glob(str(source), recursive=True))
                if not matches:
                    raise FileNotFoundError(f"{source}: no such file, folder or glob match")
                refs.extend(matches)
        if not refs:
            raise FileNotFoundError(f"no input files found in {', '.join(map(str, sources))} "
                                    f"(looked for {', '.join(self.file_patterns)})")
        return refs

    @abstractmethod
    def read(self, ref: Any) -> Sample:
        """Read one reference into a Sample; raise ``BadSampleError(source, reason)`` for bad input."""

    def read_training(self, ref: Any, seed: int) -> Sample:
        """Read for training. ``seed`` differs per sample and epoch, so an adapter that samples while
        reading (a random window of a large scene, a random frame) draws anew each epoch; default
        ``read(ref)``."""
        return self.read(ref)

    def label_of(self, ref: Any) -> Any:
        """Class label of a reference for labelled archives (default: parent folder name)."""
        return Path(str(ref)).parent.name

    def compute_stats(self, refs: Sequence[Any], max_samples: int = 256, seed: int = 0) -> NormStats:
        """Per-channel mean/std over valid pixels of up to ``max_samples`` readable samples."""
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(refs))[:max_samples] if len(refs) > max_samples else np.arange(len(refs))
        running: RunningStats | None = None
        used = 0
        names = None
        for i in order:
            try:
                sample = self.read(refs[int(i)])
            except Exception:
                continue
            image = self.stats_view(sample)
            running = running or RunningStats(image.shape[0])
            running.update(image, sample.valid)
            names = names or sample.meta.get("channel_names")
            used += 1
        if running is None:
            raise ValueError("could not read any sample to compute normalization statistics")
        return running.result(used, names)

    def stats_view(self, sample: Sample) -> np.ndarray:
        """The array statistics are computed on (channels first); override for e.g. time series."""
        return sample.image

    # ----- augmentation --------------------------------------------------------------------
    @abstractmethod
    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample:
        """Crop/augment (seeded by ``seed``, deterministic when ``train`` is False) and normalize."""

    # ----- model ---------------------------------------------------------------------------
    @abstractmethod
    def build_model(self, model: "ModelConfig", mask: "MaskConfig") -> nn.Module:
        """The MAE for this adapter's token grid; ``forward(**model_inputs(batch))`` returns an object
        with ``loss`` (and ``pred``, ``mask``)."""

    def model_inputs(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """Keyword arguments of the model's forward for a collated batch."""
        return {
            "images": batch["image"].to(device, non_blocking=True),
            "mask_seeds": batch["mask_seed"],
        }

    def embed(self, model: nn.Module, batch: dict[str, Any], device: torch.device, pool: str = "cls") -> torch.Tensor:
        """One embedding per sample from the encoder (no masking)."""
        encoder = model.encoder
        return encoder.pool(encoder.forward_features(batch["image"].to(device)), pool)

    # ----- visualization -------------------------------------------------------------------
    @abstractmethod
    def render_reconstruction(self, model: nn.Module, batch: dict[str, Any], output: Any, path: Path) -> Path:
        """Save input / masked / reconstruction / reconstruction+visible panels to ``path`` (PNG)."""

    # ----- testing -------------------------------------------------------------------------
    @abstractmethod
    def synthetic_sample(self, seed: int) -> Sample:
        """A small realistic sample (with metadata) built without data, for the conformance kit."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "api_version": self.api_version, "summary": self.summary,
                "options": self.options, "protocols": list(self.evaluation_protocols)}
