"""``microscopy.channel_agnostic``: CA-MAE on multi-channel fluorescence (and brightfield / H&E) archives.

Every channel goes through one shared 1-channel patch embedding plus a channel code looked up by *name*
(a fallback row for names outside ``channel_vocabulary``); the grid is ``(channel, y, x)`` (``(channel,
z, y, x)`` for ``z_mode=volume``); masking is random over all C x L tokens (CA-MAE), or ``consistent`` /
``independent`` along ``channel``; one decoder and one head serve every channel, so one run mixes
images with different channel sets (batches are bucketed by their channel names) and a model pretrained
on 5 channels embeds 3 or 8. An optional Fourier term (``fourier_weight``, about 0.01) is added per patch.

Options (``data.options``):

- reading: ``pages_axis`` (auto | channel | z | time, for plain multi-page TIFF; auto: named or up to 5 pages
  are channels, more unnamed gray pages are refused as a likely Z-stack), ``rgb_names``, ``level`` (pyramid
  level), ``channel_pattern`` (harmony | imagexpress | auto | a regex), ``channel_map`` (per-channel file
  numbers -> names), ``pixel_size`` (micrometres, for files that do not say);
- channels: ``channels`` (select/reorder by name), ``channel_names`` (for unnamed files), ``channel_aliases``,
  ``channel_vocabulary`` (names with a learned code), ``unknown_channels`` (fallback | error), ``channel_code``;
- planes: ``z_mode`` (max = maximum projection, the default | slices | volume), ``crop_depth`` and
  ``patch_depth`` (volume), ``time_mode`` (frames | first);
- crops (size = ``model.img_size``): ``sampling`` (random | grid), ``crops_per_image`` (int or auto),
  ``stride``, ``foreground``, ``min_foreground``, ``window_attempts``, ``flips``;
- intensities: ``normalize`` (percentile | instance | archive | none), ``percentiles``,
  ``reject_empty_channels``;
- model: ``fourier_weight``, ``reference_pixel_size`` (micrometres; scales positions by pixel size).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mae_domains.data.sample import BadSampleError, NormStats, RunningStats, Sample
from mae_domains.data.windows import PixelWindow
from mae_domains.grid_adapter import GridAdapter
from mae_domains.models.embeddings.channel_shared import ChannelSharedPatchEmbed
from mae_domains.models.fourier_loss import with_fourier_loss
from mae_domains.models.grid_mae import GridMAE
from mae_domains.models.presets import with_preset_decoder
from mae_microscopy.channel_files import CHANNEL_PATTERNS
from mae_microscopy.channels import DEFAULT_VOCABULARY, ChannelResolver
from mae_microscopy.crops import (
    NORMALIZATIONS, Z_MODES, Foreground, check_not_empty, crops_for_area, grid_windows, normalize_crop,
    project_planes, random_window, seeded_flips, window_validity,
)
from mae_microscopy.embedding3d import ChannelSharedCubeEmbed
from mae_microscopy.image_info import FieldReader
from mae_microscopy.rendering import reconstruction_figure
from mae_microscopy.field_discovery import CropRef, FieldEntry, ReaderSettings, discover_fields, planes_of, summarize
from mae_microscopy.synthetic import synthetic_field

log = logging.getLogger(__name__)

OPTIONS: dict[str, Any] = {
    "pages_axis": "auto", "rgb_names": ["red", "green", "blue"], "level": 0, "channel_pattern": "auto",
    "channel_map": {}, "pixel_size": None,
    "channels": None, "channel_names": None, "channel_aliases": {}, "channel_vocabulary": list(DEFAULT_VOCABULARY),
    "unknown_channels": "fallback", "channel_code": True,
    "z_mode": "max", "crop_depth": 8, "patch_depth": 4, "time_mode": "frames",
    "sampling": "random", "crops_per_image": "auto", "stride": None, "foreground": True, "min_foreground": 0.05,
    "window_attempts": 8, "flips": True,
    "normalize": "percentile", "percentiles": [1.0, 99.0], "reject_empty_channels": True,
    "fourier_weight": 0.0, "reference_pixel_size": None,
}
OPTION_HELP: dict[str, str] = {
    "pages_axis": "what the pages of a plain multi-page TIFF are: channel, z or time",
    "rgb_names": "channel names of the three samples of an RGB (brightfield, H&E) image",
    "level": "pyramid level read from OME-TIFF and OME-Zarr (0: full resolution)",
    "channel_pattern": "how one-file-per-channel names are grouped: harmony, imagexpress, auto or a regex",
    "channel_map": "per-channel file numbers to names, e.g. {\"1\": DNA}",
    "pixel_size": "micrometres per pixel for files that do not say",
    "channels": "channels to read, by name, in this order (null: all)",
    "channel_names": "names of the channels of files that carry none",
    "channel_aliases": "other spellings mapped onto one name, e.g. {Hoechst: DNA}",
    "channel_vocabulary": "names with a learned channel code",
    "unknown_channels": "a name outside the vocabulary gets the shared fallback code, or is an error",
    "channel_code": "add the channel code to each channel's tokens",
    "z_mode": "Z-stacks: max (maximum projection), slices (each plane a sample) or volume (3D cubes)",
    "crop_depth": "planes per crop with z_mode volume",
    "patch_depth": "planes per patch with z_mode volume",
    "time_mode": "time-lapse: every frame a sample (frames), or the first only",
    "sampling": "random crops (a new window each epoch) or a regular grid",
    "crops_per_image": "crops per field and epoch: a number, or auto (the field's area in crops)",
    "stride": "step between grid crops in pixels (null: the crop size)",
    "foreground": "redraw random windows until min_foreground of the window is brighter than Otsu's threshold",
    "min_foreground": "foreground share a random window needs",
    "window_attempts": "random windows tried per crop",
    "flips": "random flips and 90-degree rotations in training",
    "normalize": "per crop and channel: percentile (percentiles to 0-1), instance (standardized), archive "
                 "(per-channel-name statistics) or none",
    "percentiles": "low and high percentiles mapped to 0 and 1 with normalize: percentile",
    "reject_empty_channels": "skip crops with a constant (empty) channel",
    "fourier_weight": "weight w of the Fourier term: (1 - w) MSE + w L1 of the patch spectra (about 0.01)",
    "reference_pixel_size": "micrometres per pixel at which positions advance one step per patch (null: "
                            "positions do not depend on pixel size)",
}


def _choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"data.options.{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


class ChannelAgnosticAdapter(GridAdapter):
    name = "microscopy.channel_agnostic"
    summary = ("Fluorescence microscopy (OME-TIFF, TIFF, per-channel files, OME-Zarr): channel-agnostic MAE, one "
               "shared patch embedding + channel code by name, any number and order of channels.")
    value_range = ("intensities as stored (float32), normalized per crop and channel as data.options.normalize "
                   "says (percentile: 1st-99th percentile to 0-1)")
    method_papers = ('Kraus et al.: "Masked Autoencoders for Microscopy are Scalable Learners of Cellular '
                     'Biology", CVPR 2024 (channel-agnostic MAE)',)
    file_patterns = ("*.tif", "*.tiff", "*.zarr", "*.csv")
    option_defaults = OPTIONS
    option_help = OPTION_HELP
    mask_axis = "channel"
    default_mask_ratio = 0.75
    default_mask_strategy = "random"  # CA-MAE: independent random masking over all C x L tokens
    evaluation_protocols = ("knn", "linear_probe", "microscopy.one_nn_f1", "microscopy.chammi",
                            "microscopy.replicate_map", "microscopy.relationship_recall")

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        _choice("pages_axis", o["pages_axis"], ("auto", "channel", "z", "time"))
        _choice("z_mode", o["z_mode"], Z_MODES)
        _choice("time_mode", o["time_mode"], ("frames", "first"))
        _choice("sampling", o["sampling"], ("random", "grid"))
        _choice("normalize", o["normalize"], NORMALIZATIONS)
        if not (o["crops_per_image"] == "auto" or (isinstance(o["crops_per_image"], int) and o["crops_per_image"] > 0)):
            raise ValueError(f"data.options.crops_per_image must be 'auto' or a positive integer, got {o['crops_per_image']!r}")
        if not 0.0 <= float(o["min_foreground"]) <= 1.0:
            raise ValueError(f"data.options.min_foreground must be in [0, 1], got {o['min_foreground']}")
        if not 0.0 <= float(o["fourier_weight"]) < 1.0:
            raise ValueError(f"data.options.fourier_weight must be in [0, 1), got {o['fourier_weight']}")
        low, high = (float(p) for p in o["percentiles"])
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"data.options.percentiles must be two increasing values in [0, 100], got {o['percentiles']}")
        if int(o["window_attempts"]) < 1:
            raise ValueError(f"data.options.window_attempts must be at least 1, got {o['window_attempts']}")
        pattern = o["channel_pattern"]
        self.settings = ReaderSettings(
            pages_axis=str(o["pages_axis"]), rgb_names=tuple(o["rgb_names"]), level=int(o["level"]),
            channel_patterns=tuple(CHANNEL_PATTERNS) if pattern == "auto" else (str(pattern),),
            channel_map=tuple(sorted((str(k), str(v)) for k, v in dict(o["channel_map"]).items())))
        from mae_microscopy.channel_files import compile_pattern

        for p in self.settings.channel_patterns:
            compile_pattern(p)  # a bad pattern fails here with the option's name, not in a worker
        self.resolver = ChannelResolver(o["channels"], o["channel_names"], o["channel_aliases"],
                                        tuple(o["channel_vocabulary"]), str(o["unknown_channels"]))
        self.classes: list[str] = []
        self._readers: dict[Any, FieldReader] = {}
        self._foreground: dict[Any, Foreground] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_readers": {}, "_foreground": {}}

    # ----- sizes -----------------------------------------------------------------------------------
    @property
    def crop_size(self) -> int:
        return int(self.config.model.img_size)

    @property
    def volume(self) -> bool:
        return self.options["z_mode"] == "volume"

    # ----- discovery -------------------------------------------------------------------------------
    def discover(self, sources: Sequence[str | Path]) -> list[CropRef]:
        """Crop references of every field and plane; fields that cannot be used stay in the list (their
        read raises the reason), so pretraining skips and lists them."""
        entries = discover_fields(sources, replace(self.settings, max_pixels=self.config.data.max_pixels))
        labels = [e.id("label") for e in entries]
        self.classes = sorted(set(labels)) if labels and all(labels) else []
        refs: list[CropRef] = []
        broken: list[tuple[FieldEntry, str]] = []
        unknown: set[str] = set()
        for entry in entries:
            try:
                if entry.info is None:
                    raise BadSampleError(entry.source, entry.error or "unreadable")
                plan = self.resolver.plan(entry.source, entry.info.channel_names, entry.given_names,
                                          entry.expected_channels)
            except BadSampleError as err:
                log.warning("field %s will be skipped: %s", entry.sample_id, err.reason)
                broken.append((entry, err.reason))
                continue
            unknown.update(self.resolver.unknown_names(plan.names))
            signature = self.signature_of(plan.names)
            refs.extend(self.crop_refs(entry, signature))
        if not refs:
            reasons = "; ".join(f"{e.sample_id}: {reason}" for e, reason in broken[:3])
            raise ValueError(f"none of the {len(entries)} field(s) can be used ({reasons})")
        if unknown:
            log.warning("channel name(s) %s are outside channel_vocabulary and get the shared fallback code",
                        sorted(unknown))
        common = Counter(r.signature for r in refs).most_common(1)[0][0]
        refs.extend(CropRef(entry, signature=common) for entry, _ in broken)  # replaced by peers of the common grid
        log.info("microscopy archive: %s -> %d crops", dict(summarize(entries)), len(refs))
        return refs

    def signature_of(self, names: Sequence[str]) -> tuple:
        """The grid a crop makes: its channel names (order matters) and, for volumes, the depth."""
        sig: tuple = (("channel_names", tuple(names)),)
        return sig + (("depth", int(self.options["crop_depth"])),) if self.volume else sig

    def crop_refs(self, entry: FieldEntry, signature: tuple) -> list[CropRef]:
        """Grid windows, or ``crops_per_image`` random crops, of every plane of a field."""
        info, o, size = entry.info, self.options, self.crop_size
        assert info is not None
        refs = []
        for t, z in planes_of(info, str(o["z_mode"]), str(o["time_mode"])):
            if o["sampling"] == "grid":
                windows = grid_windows(info.height, info.width, size, o["stride"])
                refs.extend(CropRef(entry, t, z, w.as_tuple(), k, signature) for k, w in enumerate(windows))
            else:
                count = o["crops_per_image"] if o["crops_per_image"] != "auto" else crops_for_area(info.height, info.width, size)
                refs.extend(CropRef(entry, t, z, None, k, signature) for k in range(count))
        return refs

    def grid_signature(self, ref: Any) -> Any:
        return ref.signature if isinstance(ref, CropRef) else None

    def label_of(self, ref: Any) -> Any:
        return ref.field.id("label") if isinstance(ref, CropRef) else super().label_of(ref)

    # ----- reading ---------------------------------------------------------------------------------
    def reader(self, entry: FieldEntry) -> FieldReader:
        """This process's reader of a field (header already known from discovery)."""
        reader = self._readers.get(entry.spec)
        if reader is None:
            reader = entry.spec.open(self.settings)
            reader.max_pixels = self.config.data.max_pixels
            if entry.info is not None and hasattr(reader, "_info"):
                reader._info = entry.info
            if len(self._readers) > 4096:
                self._readers.clear()
            self._readers[entry.spec] = reader
        return reader

    def foreground(self, entry: FieldEntry, reader: FieldReader, channels: Sequence[int]) -> Foreground:
        key = (entry.spec, tuple(channels))
        if key not in self._foreground:
            self._foreground[key] = Foreground.from_overview(reader.overview(channels=list(channels)))
        return self._foreground[key]

    def read(self, ref: Any) -> Sample:
        """The crop at its fixed window, or at the window the run seed draws for it (evaluation, stats)."""
        index = ref.index if isinstance(ref, CropRef) else 0
        return self.read_crop(ref, int(np.random.SeedSequence([int(self.config.engine.seed), index]).generate_state(1)[0]))

    def read_training(self, ref: Any, seed: int) -> Sample:
        """A window (and z-range) drawn anew from every sample seed, i.e. every epoch."""
        return self.read_crop(ref, seed)

    def read_crop(self, ref: CropRef, seed: int) -> Sample:
        if not isinstance(ref, CropRef):
            raise TypeError(f"{self.name} reads CropRef objects from discover(), got {type(ref).__name__}")
        entry = ref.field
        if entry.info is None:
            raise BadSampleError(entry.source, entry.error or "unreadable")
        info = entry.info
        plan = self.resolver.plan(entry.source, info.channel_names, entry.given_names, entry.expected_channels)
        rng = np.random.default_rng(seed)
        planes, z_valid = self.choose_planes(ref, info.planes, rng)
        reader = self.reader(entry)
        size = self.crop_size
        window, fraction = self.choose_window(ref, entry, reader, plan.indices, planes, rng)
        block = reader.read(ref.t, plan.indices, planes, window)
        valid = window_validity(window, info.height, info.width)
        if self.options["reject_empty_channels"]:
            check_not_empty(entry.source, block, valid, plan.names, window)
        image = project_planes(block, str(self.options["z_mode"]))
        if self.volume:
            valid = z_valid[:, None, None] & valid[None]
        pixel_size = info.pixel_size or self.option_pixel_size()
        meta = {
            "source": entry.source, "sample_id": ref.sample_id, "channel_names": list(plan.names),
            "pixel_size": list(pixel_size) if pixel_size else None, "z_step": info.z_step, "t": ref.t,
            "z": ref.z, "planes": [int(p) for p in planes], "window": list(window.as_tuple()),
            "field_shape": [info.height, info.width], "format": info.format, "dtype": info.dtype,
            "foreground_fraction": fraction, "crop_size": size,
            "axes": ["channel", "z", "y", "x"] if self.volume else ["channel", "y", "x"],
        }
        meta.update(dict(entry.ids))
        label = entry.id("label")
        return Sample(image.astype(np.float32), meta, valid, self.classes.index(label) if label in self.classes else None)

    def read_labelled(self, image: Any, label: Any, stats: NormStats | None = None) -> tuple[Sample, np.ndarray]:
        """A whole field (a TIFF / OME-TIFF tile) and its 2D mask of class or instance ids (TIFF or PNG) on the
        same grid, for segmentation: the field read as crops are (channels by name, planes projected), then
        normalized per channel as ``transform`` normalizes a crop (``normalize`` over the whole tile); the
        model's ``img_size`` is the sliding window, not a resize. A field that is not one 2D plane per channel
        (time series, ``z_mode`` slices or volume) or a mask on another grid is a :class:`BadSampleError`."""
        from mae_domains.data.label_masks import check_mask_grid, read_label_mask

        entries = discover_fields([image], replace(self.settings, max_pixels=self.config.data.max_pixels))
        if len(entries) != 1:
            raise BadSampleError(str(image), f"expected one field for a labelled image, found {len(entries)}")
        entry = entries[0]
        if entry.info is None:
            raise BadSampleError(entry.source, entry.error or "unreadable")
        if entry.info.frames > 1 or self.volume or (self.options["z_mode"] == "slices" and entry.info.planes > 1):
            raise BadSampleError(entry.source, f"2D segmentation reads one plane per channel; this field has "
                                               f"{entry.info.frames} time points and {entry.info.planes} planes "
                                               f"with z_mode={self.options['z_mode']}")
        height, width = entry.info.height, entry.info.width
        sample = self.read_crop(CropRef(entry, window=(0, 0, height, width)), 0)
        labels = read_label_mask(label, self.config.data.max_pixels)
        check_mask_grid(labels, (height, width), entry.source, label)
        valid = np.ones((height, width), bool) if sample.valid is None else sample.valid
        pixels = normalize_crop(sample.image, valid, str(self.options["normalize"]), sample.meta["channel_names"],
                                tuple(self.options["percentiles"]), stats)
        meta = {**sample.meta, "sample_id": Path(entry.source).name, "label_source": str(label)}
        return Sample(pixels, meta, valid), labels

    def option_pixel_size(self) -> tuple[float, float] | None:
        value = self.options["pixel_size"]
        if value is None:
            return None
        return (float(value), float(value)) if np.isscalar(value) else (float(value[0]), float(value[1]))

    def choose_planes(self, ref: CropRef, planes: int, rng: np.random.Generator) -> tuple[list[int], np.ndarray]:
        """The planes of a crop and, for volumes, which of the ``crop_depth`` slots hold a real plane."""
        if ref.z is not None:
            return [ref.z], np.ones(1, bool)
        if not self.volume:
            return list(range(planes)), np.ones(1, bool)
        depth = int(self.options["crop_depth"])
        if planes >= depth:
            start = int(rng.integers(0, planes - depth + 1))
            return list(range(start, start + depth)), np.ones(depth, bool)
        offset = (depth - planes) // 2  # a short stack is centred and padded with invalid planes
        order = [min(max(i - offset, 0), planes - 1) for i in range(depth)]
        valid = np.array([0 <= i - offset < planes for i in range(depth)])
        return order, valid

    def choose_window(self, ref: CropRef, entry: FieldEntry, reader: FieldReader, channels: Sequence[int],
                      planes: Sequence[int], rng: np.random.Generator) -> tuple[PixelWindow, float | None]:
        """The fixed window, or a seeded random one; with ``foreground`` the best of up to
        ``window_attempts`` draws, stopping at the first with ``min_foreground`` of foreground."""
        info = entry.info
        assert info is not None
        if ref.window is not None:
            return PixelWindow(*ref.window), None
        size = self.crop_size
        if not self.options["foreground"] or (info.height <= size and info.width <= size):
            return random_window(rng, info.height, info.width, size), None
        fg = self.foreground(entry, reader, channels)
        best: tuple[float, PixelWindow] | None = None
        for _ in range(int(self.options["window_attempts"])):
            window = random_window(rng, info.height, info.width, size)
            step = max(1, size // 32)  # a strided look is enough to score a window
            rows = slice(max(window.row, 0), min(window.row + size, info.height), step)
            cols = slice(max(window.col, 0), min(window.col + size, info.width), step)
            probe = np.stack([reader.read_planes(ref.t, c, list(planes), rows, cols).max(axis=0) for c in channels])
            fraction = fg.fraction(probe)
            if best is None or fraction > best[0]:
                best = (fraction, window)
            if fraction >= float(self.options["min_foreground"]):
                break
        assert best is not None
        return best[1], best[0]

    # ----- statistics and transforms ---------------------------------------------------------------
    def compute_stats(self, refs: Sequence[Any], max_samples: int = 256, seed: int = 0) -> NormStats:
        """Per channel *name* mean and std over valid pixels of up to ``max_samples`` readable crops (used by
        ``normalize=archive``; kept with the checkpoint in every mode)."""
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(refs))[:max_samples] if len(refs) > max_samples else np.arange(len(refs))
        running: dict[str, RunningStats] = {}
        used = 0
        for i in order:
            try:
                sample = self.read(refs[int(i)])
            except Exception:  # a bad crop is reported when training reads it; statistics use the others
                continue
            for c, name in enumerate(sample.meta["channel_names"]):
                running.setdefault(name, RunningStats(1)).update(sample.image[c:c + 1], sample.valid)
            used += 1
        if not running:
            raise ValueError("could not read any crop to compute normalization statistics")
        names = sorted(running)
        parts = [running[n].result(used) for n in names]
        return NormStats([p.mean[0] for p in parts], [p.std[0] for p in parts], used, names)

    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample:
        """Crop or pad to the crop size (random when training, centred otherwise), seeded flips and turns
        when training, then per-channel normalization."""
        image = np.asarray(sample.image, dtype=np.float32)
        spatial = image.shape[-2:]
        valid = sample.valid if sample.valid is not None else np.ones(image.shape[1:], bool)
        valid = np.broadcast_to(valid, image.shape[1:]).copy()
        rng = np.random.default_rng(seed)
        size = self.crop_size
        if spatial != (size, size):
            window = random_window(rng, *spatial, size) if train else PixelWindow((spatial[0] - size) // 2,
                                                                            (spatial[1] - size) // 2, size, size)
            rows, cols, pad = window.clipped(*spatial)
            widths = [(0, 0)] * (image.ndim - 2) + [(pad[0], pad[1]), (pad[2], pad[3])]
            image = np.pad(image[..., rows, cols], widths)
            valid = np.pad(valid[..., rows, cols], widths[1:], constant_values=False)
        if train and self.options["flips"]:
            image, valid = seeded_flips(image, valid, rng)
        names = sample.meta.get("channel_names") or [f"channel_{i}" for i in range(image.shape[0])]
        image = normalize_crop(image, valid, str(self.options["normalize"]), names,
                               tuple(self.options["percentiles"]), stats)
        return Sample(image, sample.meta, np.ascontiguousarray(valid), sample.label)

    # ----- model -----------------------------------------------------------------------------------
    def build_embedding(self, model) -> ChannelSharedPatchEmbed | ChannelSharedCubeEmbed:
        """One shared 1-channel projection, 2D sin-cos (3D for volumes) + a learned code per channel name;
        code tables at the encoder and decoder widths, so the shared decoder knows each token's channel."""
        o = self.options
        vocabulary = list(o["channel_vocabulary"])
        widths = [int(with_preset_decoder(model).decoder_embed_dim)]
        if self.volume:
            patch = (int(o["patch_depth"]), int(model.patch_size), int(model.patch_size))
            if int(o["crop_depth"]) % patch[0]:
                raise ValueError(f"data.options.crop_depth {o['crop_depth']} is not divisible by patch_depth {patch[0]}")
            return ChannelSharedCubeEmbed(self.embed_dim(model), patch, vocabulary, bool(o["channel_code"]), widths)
        reference = o["reference_pixel_size"]
        spacing = None if reference is None else (float(reference), float(reference))
        return ChannelSharedPatchEmbed(self.embed_dim(model), int(model.patch_size), vocabulary,
                                       bool(o["channel_code"]), widths, spacing)

    def build_model(self, model, mask) -> GridMAE:
        """The GridMAE, with the Fourier term when ``fourier_weight`` > 0."""
        return with_fourier_loss(super().build_model(model, mask), float(self.options["fourier_weight"]))

    def batch_meta(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """Channel names per sample (the embedding checks they agree) and, with ``reference_pixel_size``,
        the pixel size ``(B, 2)`` that scales positions (the reference size where a file does not say)."""
        metas = batch.get("meta") or []
        out: dict[str, Any] = {}
        if metas and all(m.get("channel_names") for m in metas):
            out["channel_names"] = [list(m["channel_names"]) for m in metas]
        reference = self.options["reference_pixel_size"]
        if reference is not None and metas:
            sizes = [m.get("pixel_size") or [reference, reference] for m in metas]
            out["spacing"] = torch.tensor(sizes, dtype=torch.float64, device=device)
        return out

    # ----- figures and tests -----------------------------------------------------------------------
    def render_reconstruction(self, model, batch: dict[str, Any], output, path: Path) -> Path:
        return reconstruction_figure(self, model, batch, output, path)

    def synthetic_sample(self, seed: int) -> Sample:
        """A 16-bit Cell Painting-like field (5 stains) a little larger than the crop, as float32 counts."""
        names = list(self.resolver.select or ("DNA", "RNA", "ER", "AGP", "Mito"))
        size = self.crop_size + 16
        planes = int(self.options["crop_depth"]) if self.volume else 1
        image = synthetic_field(seed, names, size, size, cells=5, planes=planes).astype(np.float32)
        meta = {"source": f"synthetic:{seed}", "sample_id": f"synthetic-{seed}", "channel_names": names,
                "pixel_size": [0.65, 0.65], "plate": "synthetic", "well": "A01", "site": str(seed),
                "axes": ["channel", "z", "y", "x"] if self.volume else ["channel", "y", "x"]}
        return Sample(image, meta, np.ones(image.shape[1:], bool), None)
