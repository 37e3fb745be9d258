"""The adapter contract: what a plugin author writes to bring a modality to mae-domains.

An adapter is a class with a registered ``name`` (``family.kind``) and an ``api_version``. It lists
the user's files, reads them into :class:`~mae_domains.data.Sample`, augments and normalizes them,
builds the MAE model for its token grid, and knows how to embed, evaluate and render. Register it in
your distribution's ``pyproject.toml``::

    [project.entry-points."mae_domains.adapters"]
    "myfield.mykind" = "my_package.adapter:MyAdapter"
"""

from __future__ import annotations

import dataclasses
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from mae_domains import ADAPTER_API_VERSION
from mae_domains.data.read_failures import ReadFailures, StatsError
from mae_domains.data.sample import BadSampleError, NormStats, RunningStats, Sample
from mae_domains.files import find_files
from mae_domains.log_names import LogLines, printable
from mae_domains.grid import GridBatch
from mae_domains.progress import ProgressClock

if TYPE_CHECKING:
    from mae_domains.config import MaskConfig, ModelConfig

log = logging.getLogger(__name__)


# Statistics over at least this many samples log their progress at every tenth.
STATS_PROGRESS_MIN = 50

# Options that earlier versions took in ``data.options`` and that now live in the run config.
MOVED_OPTIONS = {"masking": "mask.strategy", "decoder": "model.decoder", "mask_ratio": "mask.ratio"}


class Adapter(ABC):
    """Base class of every adapter. Subclasses set ``name`` and implement the abstract hooks.

    ``options`` are adapter-specific settings from the config's ``data.options`` section
    (e.g. ``img_size``, ``channels``, band groups); unknown options are an error.

    ``excluded`` holds the ``(file, reason)`` pairs that the last :meth:`discover` left out (files that
    hold no sample, e.g. a DICOM file without pixel data); training lists them in ``skipped.csv`` and
    ``embed`` in ``skipped_sources``, so no file is dropped silently.
    """

    name: ClassVar[str] = ""
    api_version: ClassVar[str] = ADAPTER_API_VERSION
    summary: ClassVar[str] = ""
    default_mask_ratio: ClassVar[float] = 0.75
    default_mask_strategy: ClassVar[str] = "random"
    evaluation_protocols: ClassVar[tuple[str, ...]] = ("knn", "linear_probe", "finetune")
    file_patterns: ClassVar[tuple[str, ...]] = ("*",)
    option_defaults: ClassVar[dict[str, Any]] = {}
    option_help: ClassVar[dict[str, str]] = {}  # what each option means, one line each (``mae-domains adapters NAME``)
    value_range: ClassVar[str] = ""  # the values ``read`` produces, e.g. "0-1: pixels divided by their maximum"
    method_papers: ClassVar[tuple[str, ...]] = ()  # citations of the method papers the adapter implements
    # ``read`` returns whole 2D images that ``transform`` resizes: ``prepare --resolution`` may store them smaller
    resizes_whole_image: ClassVar[bool] = False

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            from mae_domains.config import suggest

            hints = "; ".join(f"{k!r} (now {MOVED_OPTIONS[k]})" if k in MOVED_OPTIONS else
                              f"{k!r}{suggest(k, self.option_defaults)}" for k in unknown)
            raise ValueError(f"adapter {self.name}: unknown option(s) {hints}")
        self.options = {**self.option_defaults, **options}
        self.excluded: list[tuple[str, str]] = []
        from mae_domains.config import RunConfig

        self.bind(RunConfig(adapter=self.name))

    def bind(self, config: Any) -> "Adapter":
        """Attach the run configuration (model input size, channels, mask settings) before use; the mask
        settings the config leaves open are filled in from the adapter's recipe (:meth:`resolve_mask`), so
        the config written into a run directory says what was used (the decoder sizes the preset gives are
        filled in where the model is built)."""
        config.mask = self.resolve_mask(config.mask)
        self.config = config
        return self

    def resolve_mask(self, mask: "MaskConfig") -> "MaskConfig":
        """The one place mask defaults are decided: the config's values, else the adapter's recipe
        (``default_mask_ratio``, ``default_mask_strategy``)."""
        return dataclasses.replace(
            mask,
            ratio=self.default_mask_ratio if mask.ratio is None else mask.ratio,
            strategy=mask.strategy or self.default_mask_strategy,
        )

    # ----- loading -------------------------------------------------------------------------
    def discover(self, sources: Sequence[str | os.PathLike]) -> list[Any]:
        """Sample references for paths, globs or folders (searched recursively by ``file_patterns``, each
        real file once even through symlink loops)."""
        refs: list[Any] = list(find_files(sources, self.file_patterns))
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

    def grid_signature(self, ref: Any) -> Any:
        """Which token grid a reference makes (e.g. its channel count or band subset), known without
        reading pixels where possible; samples of different signatures never share a batch. Default:
        all alike (None)."""
        return None

    def sample_files(self, ref: Any) -> tuple[str, ...]:
        """The files a reference reads, for the start-up summary's count: ``ref.files`` when it has them,
        else the file it names (``os.fspath``: a frame reference names its file), else its ``source``,
        else ``str(ref)``."""
        files = getattr(ref, "files", None)
        if files is not None:
            return tuple(str(f) for f in files)
        if isinstance(ref, os.PathLike):
            return (os.fspath(ref),)
        return (str(getattr(ref, "source", ref)),)

    def sample_scene(self, ref: Any) -> str | None:
        """The scene a reference is cut from when samples are chips of scenes (None: samples are files,
        frames or volumes), for the start-up summary's count."""
        return None

    def label_of(self, ref: Any) -> Any:
        """Class label of a reference for labelled archives (default: parent folder name)."""
        return Path(str(ref)).parent.name

    def compute_stats(self, refs: Sequence[Any], max_samples: int = 256, seed: int = 0) -> NormStats:
        """Per-channel mean/std over valid pixels of up to ``max_samples`` readable samples, robust to
        samples far outside the archive's range (:class:`RunningStats`). Unreadable and rejected samples are
        logged by reason; when none is usable the error gives the first files and a count per reason."""
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(refs))[:max_samples] if len(refs) > max_samples else np.arange(len(refs))
        running: RunningStats | None = None
        failures = ReadFailures()
        names = None
        report_every = max(1, len(order) // 10) if len(order) >= STATS_PROGRESS_MIN else 0
        clock = ProgressClock(len(order), unit="samples")
        for done, i in enumerate(order):
            if report_every and done and done % report_every == 0:
                log.info("normalization statistics: %d of %d samples read (%d unreadable so far; %s)", done,
                         len(order), failures.total, clock.describe(done))
            ref = refs[int(i)]
            try:
                sample = self.read(ref)
                image = self.stats_view(sample)
                if running is not None and image.shape[0] != running.channels:
                    raise BadSampleError(sample.source, f"has {image.shape[0]} channels, the archive's first "
                                                        f"sample {running.channels}")
            except Exception as err:  # every reason is reported below, none is fatal on its own
                failures.add(ref, err)
                continue
            running = running or RunningStats(image.shape[0])
            running.update(image, sample.valid, sample.source)
            names = names or sample.meta.get("channel_names")
        if running is None or not running.samples:
            what = "read" if running is None else "find valid pixels in"
            raise StatsError(f"could not {what} any of the {len(order)} sample(s) tried to compute normalization "
                             f"statistics (adapter {self.name})", failures)
        stats = running.result(len(running.samples), names)
        if failures:
            log.warning("normalization statistics: %d of %d sample(s) unreadable, skipped:\n%s",
                        failures.total, len(order), failures.summary())
        if running.rejected:
            log.warning("normalization statistics: %d sample(s) left out as outliers:\n%s", len(running.rejected),
                        LogLines("\n".join(f"  {printable(src)}: {printable(why)}" for src, why in running.rejected[:5])))
        return stats

    def stats_view(self, sample: Sample) -> np.ndarray:
        """The array statistics are computed on (channels first); override for e.g. time series."""
        return sample.image

    # ----- augmentation --------------------------------------------------------------------
    @abstractmethod
    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample:
        """Crop/augment (seeded by ``seed``, deterministic when ``train`` is False) and normalize."""

    def finetune_transform(self, sample: Sample, seed: int, stats: NormStats | None,
                           settings: dict[str, Any]) -> Sample:
        """The training transform of downstream fine-tuning, given the protocol's resolved ``settings``
        (e.g. ``randaugment_magnitude``); default: the pretraining transform (``transform(train=True)``)."""
        return self.transform(sample, seed, True, stats)

    # ----- evaluation ----------------------------------------------------------------------
    def protocol_settings(self, protocol: str) -> dict[str, Any]:
        """This modality's defaults for a protocol's settings: the class attribute ``protocol_defaults``
        (``{protocol: {setting: value}}``) when the adapter sets one; the runner applies them over the
        protocol's own defaults and under the caller's settings."""
        return dict((getattr(type(self), "protocol_defaults", None) or {}).get(protocol, {}))

    # ----- model ---------------------------------------------------------------------------
    @abstractmethod
    def build_model(self, model: "ModelConfig", mask: "MaskConfig") -> nn.Module:
        """The MAE for this adapter's token grid; ``forward(**model_inputs(batch))`` returns an object
        with ``loss`` (and ``pred``, ``mask``)."""

    def batch_meta(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """Per-batch metadata tensors the patch embedding reads (spacing, dates, channel names ...)."""
        return {}

    def grid_batch(self, batch: dict[str, Any], device: torch.device) -> GridBatch:
        """A collated batch as the grid model sees it: pixels, validity and metadata on ``device``."""
        valid = batch.get("valid")
        target = batch.get("target")
        return GridBatch(
            batch["image"].to(device, non_blocking=True),
            None if valid is None else valid.to(device, non_blocking=True),
            self.batch_meta(batch, device),
            None if target is None else target.to(device, non_blocking=True),
        )

    def model_inputs(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """Keyword arguments of the model's forward for a collated batch."""
        return {"images": self.grid_batch(batch, device), "mask_seeds": batch["mask_seed"]}

    def embed(self, model: nn.Module, batch: dict[str, Any], device: torch.device, pool: str = "cls") -> torch.Tensor:
        """One embedding per sample from the encoder without masking: the CLS token (``cls``) or the mean
        of the valid grid tokens (``avg``)."""
        grid = model.encoder.forward_grid(self.grid_batch(batch, device))
        if pool == "cls":
            return grid.prefix[:, 0]
        if pool == "avg":
            return grid.pool(grid.layout.names).tokens[:, 0]
        raise ValueError(f"unknown pooling {pool!r}; use 'cls' or 'avg'")

    # ----- visualization -------------------------------------------------------------------
    @abstractmethod
    def render_reconstruction(self, model: nn.Module, batch: dict[str, Any], output: Any, path: Path) -> Path:
        """Save input / masked / reconstruction / reconstruction+visible panels to ``path`` (PNG)."""

    def render_sample(self, sample: Sample, path: Path) -> Path:
        """Save a picture of one sample as read, before augmentation, to ``path`` (PNG; ``mae-domains
        inspect``). The default (:mod:`mae_domains.preview`) draws gray, RGB, a composite with one panel per
        channel, one panel per frame or a volume's middle slices; override it for a domain's own view."""
        from mae_domains.preview import save_sample_preview

        return save_sample_preview(sample.image, path, sample.meta, sample.valid,
                                   title=f"{self.name}: {Path(sample.source).name}")

    # ----- testing -------------------------------------------------------------------------
    @abstractmethod
    def synthetic_sample(self, seed: int) -> Sample:
        """A small realistic sample (with metadata) built without data, for the conformance kit."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "api_version": self.api_version, "summary": self.summary,
                "options": self.options, "protocols": list(self.evaluation_protocols)}
