"""DICOM decode rate (frames/s; uncompressed vs JPEG 2000 vs RLE, in process and with 2 loader workers) and
the share of step time spent waiting for data in X-ray pretraining at 224 px (target: under 10 %).

    python benchmarks/bench_medical_dicom.py [--size 1024] [--files 16] [--workers 2] [--steps 12] [--batch 16]

Files are generated in a temporary folder: 12-bit MONOCHROME1 radiographs with a VOI window, written as
Explicit VR Little Endian, JPEG 2000 lossless and RLE; an RGB ultrasound cine of 300 frames gives the rate
of picking single frames from a long cine. "read" is what the adapter does per sample (decode one frame,
Modality LUT, VOI, MONOCHROME1 inversion), at full size or as for 224 px training (JPEG 2000 decoded at
the reduced resolution that keeps 448 px); "decode" is pydicom's ``pixel_array`` alone. Pretraining runs
the real engine (``configs/medical_xray_vit_small.yaml``: ViT-S/16, 2-block decoder, mask 0.90) on this
machine and reads data_time / step_time from its metrics.csv. Prints Markdown tables.

    python benchmarks/bench_medical_dicom.py --display [--display-size 2048] [--repeats 7]

``--display`` times only the grayscale display arithmetic (decoded frame -> [0, 1]) per frame, in one
process: the float32 arithmetic ``dicom_display`` had before it used pydicom (copied below as
``previous_*``, the baseline), pydicom's functions on the whole frame (the direct path), and pydicom's
functions on every possible stored value looked up by the frame (the table path, what is used); then
a CT slice's Hounsfield units (pydicom's ``apply_modality_lut`` on the slice vs the table path).
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import imagecodecs
import numpy as np
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, pixel_array
from pydicom.pixels.encoders import RLELosslessEncoder
from pydicom.uid import JPEG2000Lossless, RLELossless, ExplicitVRLittleEndian, generate_uid
from torch.utils.data import DataLoader, Dataset as TorchDataset

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from mae_domains.config import load_config  # noqa: E402
from mae_domains.data.loaders import pretraining_loader  # noqa: E402
from mae_domains.engine import pretrain  # noqa: E402
from mae_domains.registry import get_adapter  # noqa: E402
from mae_medical.dicom_display import DisplaySettings, grayscale_to_unit, modality_float32  # noqa: E402
from mae_medical.dicom_reader import read_dicom_frame  # noqa: E402
from mae_medical.synthetic import chest_xray, ultrasound_frame  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def dataset(rows: int, cols: int, syntax: str, sop: str, photometric: str, bits: int, samples: int = 1,
            frames: int | None = None) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = sop, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX" if sop == DX_STORAGE else "US"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, samples, photometric
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames:
        ds.NumberOfFrames = frames
    return ds


def radiograph(seed: int, size: int) -> np.ndarray:
    """12-bit stored values of a MONOCHROME1 chest radiograph (air has high values)."""
    return np.round((1.0 - chest_xray(seed, size, size)) * 3500 + 300).astype(np.uint16)


def write_radiographs(folder: Path, kind: str, count: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    syntax = {"uncompressed": ExplicitVRLittleEndian, "jpeg2000": JPEG2000Lossless, "rle": RLELossless}[kind]
    paths = []
    for k in range(count):
        stored = radiograph(k, size)
        ds = dataset(size, size, syntax, DX_STORAGE, "MONOCHROME1", 12)
        ds.WindowCenter, ds.WindowWidth = 2000, 3600
        if kind == "uncompressed":
            ds.PixelData = stored.tobytes()
        else:
            if kind == "jpeg2000":
                data = imagecodecs.jpeg2k_encode(stored, level=0, bitspersample=12, reversible=True,
                                                 codecformat=imagecodecs.JPEG2K.CODEC.J2K)
            else:
                data = RLELosslessEncoder.encode(stored, rows=size, columns=size, samples_per_pixel=1,
                                                 bits_allocated=16, bits_stored=12, pixel_representation=0,
                                                 photometric_interpretation="MONOCHROME1", number_of_frames=1)
            ds.PixelData = encapsulate([data], has_bot=True)
            ds["PixelData"].VR = "OB"
        path = folder / f"{kind}_{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_cine(path: Path, frames: int = 300, rows: int = 480, cols: int = 640) -> Path:
    """An RGB ultrasound cine (uncompressed), ``frames`` frames of ``rows`` x ``cols``."""
    image, _ = ultrasound_frame(0, rows, cols)
    rgb = np.repeat(np.round(image * 255).astype(np.uint8)[..., None], 3, axis=-1)
    ds = dataset(rows, cols, ExplicitVRLittleEndian, US_MULTIFRAME, "RGB", 8, samples=3, frames=frames)
    ds.PixelData = np.repeat(rgb[None], frames, axis=0).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


class FrameReads(TorchDataset):
    """Item i: frame ``refs[i][1]`` of file ``refs[i][0]`` through ``fn``; returns its mean (little to send)."""

    def __init__(self, refs: Sequence[tuple[Path, int]], fn: Callable[[Path, int], np.ndarray]) -> None:
        self.refs, self.fn = list(refs), fn

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> float:
        path, frame = self.refs[i]
        return float(np.asarray(self.fn(path, frame), dtype=np.float32).mean())


def one_thread(_: int) -> None:
    torch.set_num_threads(1)


def frames_per_second(refs: Sequence[tuple[Path, int]], fn: Callable[[Path, int], np.ndarray], workers: int,
                      seconds: float) -> float:
    """Frames/s over repeated passes of ``refs`` for about ``seconds`` (worker start-up excluded)."""
    data = FrameReads(list(refs) * 1000, fn)
    if workers == 0:
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            data[count]
            count += 1
        return count / (time.perf_counter() - start)
    loader = DataLoader(data, batch_size=None, num_workers=workers, worker_init_fn=one_thread, prefetch_factor=4)
    iterator = iter(loader)
    for _ in range(2 * workers):
        next(iterator)
    start, count = time.perf_counter(), 0
    for _ in iterator:
        count += 1
        if time.perf_counter() - start >= seconds:
            break
    return count / (time.perf_counter() - start)


def decode_only(path: Path, frame: int) -> np.ndarray:
    return pixel_array(path, index=frame)


def read_as_displayed(path: Path, frame: int) -> np.ndarray:
    return read_dicom_frame(path, frame).image


def read_for_training(path: Path, frame: int) -> np.ndarray:
    """As the adapter reads for 224 px training: a large JPEG 2000 image decoded at reduced resolution."""
    return read_dicom_frame(path, frame, min_size=448).image


def bound_xray(batch: int, workers: int, preset: str, folder: Path):
    config = load_config(str(ROOT / "configs" / "medical_xray_vit_small.yaml"), [
        f"model.preset={preset}", f"engine.batch_size={batch}", "engine.log_every=1", "engine.device=cpu",
        f"data.num_workers={workers}", "data.stats_samples=8", "engine.checkpoint_every=100000",
        "optim.warmup_steps=0"], base={"data": {"sources": [str(folder)]}})
    return get_adapter("medical.xray", config.data.options).bind(config), config


def loader_batches_per_second(folder: Path, batch: int, workers: int, batches: int) -> float:
    """Batches/s of the pretraining loader alone (read + crop + normalize, ``workers`` processes)."""
    adapter, config = bound_xray(batch, workers, "small", folder)
    refs = adapter.discover([folder])
    stats = adapter.compute_stats(refs, 8)
    loader = pretraining_loader(adapter, refs, stats, batch_size=batch, seed=0, num_workers=workers,
                                max_steps=batches + 2)
    iterator = iter(loader)
    for _ in range(2):  # worker start-up excluded
        next(iterator)
    start = time.perf_counter()
    count = sum(1 for _ in iterator)
    return count / (time.perf_counter() - start)


def pretraining_wait(folder: Path, run_dir: Path, steps: int, batch: int, workers: int,
                     preset: str) -> dict[str, float]:
    """Mean step time, mean data wait and their ratio over the steps after the first two."""
    _, config = bound_xray(batch, workers, preset, folder)
    config.engine.max_steps = steps
    pretrain(config, run_dir)
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[2:]
    step = float(np.mean([float(r["step_time"]) for r in rows]))
    wait = float(np.mean([float(r["data_time"]) for r in rows]))
    return {"step": step, "wait": wait, "share": wait / step, "steps": len(rows)}


# The display arithmetic before pydicom did it (main at 0e933b8), the baseline of --display.
def previous_lut_table(item: Dataset) -> tuple[np.ndarray, int, int]:
    descriptor = [int(v) for v in item.LUTDescriptor]
    table = np.asarray(list(item.LUTData), dtype=np.int64)
    return table.astype(np.float32), descriptor[1], descriptor[2]


def previous_apply_lut(values: np.ndarray, table: np.ndarray, first: int) -> np.ndarray:
    index = np.rint(values).astype(np.int64) if values.dtype.kind == "f" else values.astype(np.int64)
    np.subtract(index, first, out=index)
    np.clip(index, 0, table.size - 1, out=index)
    return table[index]


def previous_window_to_unit(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    out = values.astype(np.float32)
    out -= centre - 0.5
    out *= 1.0 / (max(width, 1.0) - 1.0)
    out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def previous_rescale(pixels: np.ndarray, frame: Dataset) -> np.ndarray:
    if "RescaleSlope" in frame and "RescaleIntercept" in frame:
        slope, intercept = float(frame.RescaleSlope), float(frame.RescaleIntercept)
        if slope != 1.0 or intercept != 0.0:
            values = pixels.astype(np.float32)
            if slope != 1.0:
                values *= slope
            if intercept != 0.0:
                values += intercept
            return values
    return pixels


def previous_grayscale_to_unit(pixels: np.ndarray, frame: Dataset) -> np.ndarray:
    """LINEAR window, VOI LUT (preferred) or min-max, after rescale; MONOCHROME1 inverted."""
    values = previous_rescale(pixels, frame)
    if frame.get("VOILUTSequence"):
        table, first, bits = previous_lut_table(frame.VOILUTSequence[0])
        unit = previous_apply_lut(values, table, first)
        unit *= 1.0 / float(2**bits - 1)
    elif "WindowCenter" in frame:
        unit = previous_window_to_unit(values, float(frame.WindowCenter), float(frame.WindowWidth))
    else:
        unit = values.astype(np.float32)
        low, high = float(np.min(values)), float(np.max(values))
        unit -= low
        unit *= 1.0 / max(high - low, 1e-12)
    if frame.PhotometricInterpretation == "MONOCHROME1":
        np.subtract(1.0, unit, out=unit)
    return np.clip(unit, 0.0, 1.0, out=unit)


def display_frames(size: int) -> dict[str, tuple[np.ndarray, Dataset]]:
    """Decoded frames with their display attributes: a 12-bit MONOCHROME1 radiograph with a window, the
    same with a 12-bit VOI LUT, a signed CT-like frame with rescale and a window, one without any VOI."""
    stored = radiograph(0, size)
    window = dataset(size, size, ExplicitVRLittleEndian, DX_STORAGE, "MONOCHROME1", 12)
    window.WindowCenter, window.WindowWidth = 2000, 3600
    lut = dataset(size, size, ExplicitVRLittleEndian, DX_STORAGE, "MONOCHROME1", 12)
    item = Dataset()
    item.LUTDescriptor = [3600, 300, 12]
    item.LUTData = [int(v) for v in np.round(np.sqrt(np.linspace(0, 1, 3600)) * 4095)]
    lut.VOILUTSequence = [item]
    ct = dataset(size, size, ExplicitVRLittleEndian, DX_STORAGE, "MONOCHROME2", 16)
    ct.PixelRepresentation, ct.RescaleSlope, ct.RescaleIntercept = 1, 1, -1024
    ct.WindowCenter, ct.WindowWidth = 40, 400
    plain = dataset(size, size, ExplicitVRLittleEndian, DX_STORAGE, "MONOCHROME2", 12)
    return {"window (MONOCHROME1)": (stored, window), "VOI LUT (MONOCHROME1)": (stored, lut),
            "signed, rescale + window": (stored.astype(np.int16) - 1000, ct), "no VOI: min-max": (stored, plain)}


def milliseconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in ms over ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def display_arithmetic(size: int, repeats: int) -> None:
    """Prints ms per frame of the baseline, the direct path and the table path (checked equal first)."""
    settings = DisplaySettings()
    print(f"Display arithmetic, ms per {size} x {size} frame (median of {repeats})\n")
    print("| frame | previous float32 (baseline) | pydicom on the frame | pydicom on the stored-value table | "
          "table / baseline |\n|---|---|---|---|---|")
    for name, (pixels, frame) in display_frames(size).items():
        table = grayscale_to_unit(pixels, frame, settings, True).image
        np.testing.assert_allclose(table, previous_grayscale_to_unit(pixels, frame), atol=1e-5)
        np.testing.assert_allclose(table, grayscale_to_unit(pixels, frame, settings, True, use_table=False).image,
                                   atol=1e-6)
        before = milliseconds(lambda: previous_grayscale_to_unit(pixels, frame), repeats)
        direct = milliseconds(lambda: grayscale_to_unit(pixels, frame, settings, True, use_table=False), repeats)
        now = milliseconds(lambda: grayscale_to_unit(pixels, frame, settings, True), repeats)
        print(f"| {name} | {before:.1f} | {direct:.1f} | {now:.1f} | {now / before:.2f} |")
    hu_slice = radiograph(1, 512).astype(np.int16) - 1000
    _, ct = display_frames(8)["signed, rescale + window"]
    np.testing.assert_array_equal(modality_float32(hu_slice, ct, True),
                                  apply_modality_lut(hu_slice, ct).astype(np.float32))
    before = milliseconds(lambda: apply_modality_lut(hu_slice, ct).astype(np.float32), repeats * 5)
    now = milliseconds(lambda: modality_float32(hu_slice, ct, True), repeats * 5)
    print(f"\nCT slice 512 x 512 int16 -> HU float32: pydicom's apply_modality_lut on the slice {before:.2f} ms, "
          f"through the stored-value table {now:.2f} ms ({now / before:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="radiograph rows = columns")
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--display", action="store_true", help="time only the display arithmetic per frame")
    parser.add_argument("--display-size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if args.display:
        display_arithmetic(args.display_size, args.repeats)
        return
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    with tempfile.TemporaryDirectory(prefix="bench_medical_") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        archives = {kind: write_radiographs(folder / kind, kind, args.files, args.size)
                    for kind in ("uncompressed", "jpeg2000", "rle")}
        cine = write_cine(folder / "cine" / "cine.dcm")
        print(f"generated {args.files} radiographs of {args.size}^2 x 12 bit per syntax and a 300-frame "
              f"480x640 RGB cine in {time.perf_counter() - t0:.1f}s; CPU cores: {os.cpu_count()}\n")

        print(f"| file | MiB/file | decode, 1 process | read full size, 1 process | read full size, {args.workers} "
              f"workers | read for 224 px, {args.workers} workers | vs uncompressed |\n|---|---|---|---|---|---|---|")
        rates: dict[str, float] = {}
        for kind, paths in archives.items():
            refs = [(p, 0) for p in paths]
            size = np.mean([p.stat().st_size for p in paths]) / 2**20
            decode = frames_per_second(refs, decode_only, 0, args.seconds / 2)
            single = frames_per_second(refs, read_as_displayed, 0, args.seconds / 2)
            full = frames_per_second(refs, read_as_displayed, args.workers, args.seconds)
            rates[kind] = frames_per_second(refs, read_for_training, args.workers, args.seconds)
            ratio = rates[kind] / rates["uncompressed"]
            print(f"| {kind} {args.size}^2 | {size:.2f} | {decode:.1f} f/s | {single:.1f} f/s | {full:.1f} f/s | "
                  f"{rates[kind]:.1f} f/s | {ratio:.2f}x |")
        order = np.random.default_rng(0).permutation(300)
        cine_refs = [(cine, int(k)) for k in order]
        cine_rate = frames_per_second(cine_refs, read_as_displayed, args.workers, args.seconds)
        print(f"| cine 300 x 480x640 RGB, random frames | {cine.stat().st_size / 2**20:.0f} | - | - | "
              f"{cine_rate:.1f} f/s | - | - |")

        print(f"\nX-ray pretraining at 224 px (ViT-{args.preset[0].upper()}/16 recipe, batch {args.batch}, "
              f"{args.steps} steps, {args.workers} workers, CPU)\n")
        print("| archive | step time | data wait | wait share (target < 10 %) | loader alone, batches/s | "
              "steps of at least this wait < 10 % |\n|---|---|---|---|---|---|")
        for kind in ("uncompressed", "jpeg2000"):
            result = pretraining_wait(folder / kind, folder / f"run_{kind}", args.steps, args.batch, args.workers,
                                      args.preset)
            loader = loader_batches_per_second(folder / kind, args.batch, args.workers, args.steps)
            print(f"| {kind} | {result['step']:.2f} s | {result['wait']:.3f} s | {100 * result['share']:.1f} % | "
                  f"{loader:.2f} | {0.9 / loader:.2f} s |")
        print("\nThe loader alone runs on the same cores; a faster (GPU) step than the last column waits for data "
              "more than 10 %: give the loader more cores (one worker each).")


if __name__ == "__main__":
    main()
