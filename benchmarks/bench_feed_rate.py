"""Can the loader feed a GPU? Samples/s the pretraining loader delivers, with no model, for every built-in
adapter and each realistic encoding of its files, with 0, 1, 2 ... loader workers, per core, beside the
rate a GPU consumes and the cores that rate would take.

The loader is the engine's own (:func:`mae_domains.data.loaders.pretraining_loader`: read, training
transform, normalization, collation) at the recipe's image size; the first ``--warmup`` batches are not
counted (worker start-up). "per core" is samples/s over the cores that decode: the main process with 0
workers, else the workers (the main process only collates). The GPU figure (``--gpu-rate``, default
1,500 samples/s) is the middle of 1,000-3,000 images/s that an MAE ViT-B step at 224 px consumes on one
modern GPU in bf16 (issue 29; the MAE paper's ViT-L runs at ~1,100 images/s on 128 TPU v3 cores, and a
ViT-B step costs a third of a ViT-L one); ``cores for GPU`` = gpu rate / per-core rate. For CT the
figure is ``--gpu-rate-ct`` crops of 96^3 (100 by default, the issue's target).

With ``--shards`` every archive is also prepared once (``mae-domains prepare``) and read back from its
shards; the table then gives both rates and the shards' size beside the decoded size.

    python benchmarks/bench_feed_rate.py --quick           # about a minute: small archives, 0 and 1 worker
    python benchmarks/bench_feed_rate.py --shards          # every case, 0/1/2 workers, raw and shards
    python benchmarks/bench_feed_rate.py --cases xray_j2k --workers 0 2 4 --batches 8
    python benchmarks/bench_feed_rate.py --quick --shards --cases micro_ome_tiff --workers 0 --batches 20 --repeat 3
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the archive writers of the other benchmarks

import numpy as np  # noqa: E402

ROOT = HERE.parent


@dataclass
class Case:
    adapter: str
    recipe: str
    encoding: str
    write: Callable[[Path, int, bool], list[str]]  # (folder, files, quick) -> extra config overrides
    options: tuple[str, ...] = ()


# ----- archive writers -------------------------------------------------------------------------------
def photos(fmt: str) -> Callable[[Path, int, bool], list[str]]:
    def write(folder: Path, count: int, quick: bool) -> list[str]:
        from PIL import Image

        from bench_loader_workers import write_jpegs

        write_jpegs(folder, count, 288 if quick else 500)
        if fmt == "png":
            for path in sorted(folder.glob("*.jpg")):
                Image.open(path).save(path.with_suffix(".png"))
                path.unlink()
        return []
    return write


def radiographs(kind: str) -> Callable[[Path, int, bool], list[str]]:
    def write(folder: Path, count: int, quick: bool) -> list[str]:
        from bench_medical_dicom import write_radiographs

        write_radiographs(folder, kind, count, 512 if quick else 2048)
        return []
    return write


def ct_niftis(folder: Path, count: int, quick: bool) -> list[str]:
    from bench_adapter_step import write_niftis

    folder.mkdir(parents=True, exist_ok=True)
    write_niftis(folder, max(2, count // 8), (64, 160, 160) if quick else (120, 256, 256))
    return [f"data.options.cache_dir={folder.parent / (folder.name + '_cache')}"]


def ct_series(folder: Path, count: int, quick: bool) -> list[str]:
    """Axial CT DICOM series (one file per slice, int16 + rescale), as scanners export them."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    from mae_medical.volume_phantoms import abdomen_phantom

    for v in range(max(2, count // 8)):
        hu, _ = abdomen_phantom(v, (64, 160, 160) if quick else (120, 256, 256))
        series, study = generate_uid(), generate_uid()
        out = folder / f"series_{v:02d}"
        out.mkdir(parents=True, exist_ok=True)
        for k in range(hu.shape[0]):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, study
            ds.Rows, ds.Columns = hu.shape[1:]
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [0.0, 0.0, 2.5 * k]
            ds.PixelSpacing, ds.SliceThickness, ds.InstanceNumber = [0.8, 0.8], 2.5, k + 1
            ds.RescaleSlope, ds.RescaleIntercept = 1, 0
            ds.PixelData = np.round(hu[k]).astype(np.int16).tobytes()
            ds.save_as(out / f"slice_{k:04d}.dcm", enforce_file_format=True)
    return [f"data.options.cache_dir={folder.parent / (folder.name + '_cache')}"]


def cogs(folder: Path, count: int, quick: bool) -> list[str]:
    from bench_adapter_step import write_geotiffs

    folder.mkdir(parents=True, exist_ok=True)
    write_geotiffs(folder, max(2, count // 8), 512 if quick else 1024)
    return []


def s2_jp2_bands(folder: Path, count: int, quick: bool) -> list[str]:
    """Sentinel-2 L1C band files as the SAFE products ship them: one JPEG 2000 file per band at its
    native resolution (10 m: B02 B03 B04 B08; 20 m: B05 B06 B07 B8A B11 B12), uint16."""
    import rasterio
    from rasterio.transform import from_origin

    from mae_remote_sensing.synthetic import synthetic_scene

    native = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20, "B8A": 20,
              "B11": 20, "B12": 20}
    size = 512 if quick else 1024
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(max(2, count // 8)):
        scene, _ = synthetic_scene(i, list(native), size, size, nodata_corner=False)
        tile = f"T33UUP_2020060{i % 9 + 1}T101031"
        for b, (band, gsd) in enumerate(native.items()):
            step = gsd // 10
            pixels = np.clip(scene[b, ::step, ::step], 1, 65535).astype(np.uint16)
            profile = dict(driver="JP2OpenJPEG", width=pixels.shape[1], height=pixels.shape[0], count=1,
                           dtype="uint16", crs="EPSG:32633", transform=from_origin(500000.0 + 10 * size * i, 5800000.0,
                                                                                   gsd, gsd),
                           QUALITY=100, REVERSIBLE="YES", RESOLUTIONS=3)
            with rasterio.open(folder / f"{tile}_{band}.jp2", "w", **profile) as dst:
                dst.write(pixels, 1)
    return ["data.options.layout=band_files",
            "data.options.bands=[B02,B03,B04,B05,B06,B07,B08,B8A,B11,B12]"]


def ome_tiffs(folder: Path, count: int, quick: bool) -> list[str]:
    from bench_adapter_step import write_ome_tiffs

    folder.mkdir(parents=True, exist_ok=True)
    write_ome_tiffs(folder, max(2, count // 8), 512 if quick else 1024)
    return []


def ome_zarrs(folder: Path, count: int, quick: bool) -> list[str]:
    """OME-Zarr (NGFF 0.4) fields: full resolution and a 2x level, 256 px chunks, omero channel labels."""
    import zarr

    from bench_adapter_step import CELL_PAINTING
    from mae_microscopy.synthetic import synthetic_field

    size = 512 if quick else 1024
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(max(2, count // 8)):
        tiles = size // 256
        rows = [np.concatenate([synthetic_field(i * 100 + r * tiles + c, CELL_PAINTING, 256, 256, cells=8)
                                for c in range(tiles)], axis=2) for r in range(tiles)]
        data = np.concatenate(rows, axis=1)
        root = zarr.open_group(str(folder / f"field_{i:03d}.ome.zarr"), mode="w", zarr_format=2)
        root.create_array("0", data=data, chunks=(1, 256, 256))
        root.create_array("1", data=np.ascontiguousarray(data[:, ::2, ::2]), chunks=(1, 256, 256))
        axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"}]
        root.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [
            {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.65 * 2**level,
                                                                                          0.65 * 2**level]}]}
            for level in (0, 1)]}]
        root.attrs["omero"] = {"channels": [{"label": n} for n in CELL_PAINTING]}
    return []


CASES = {
    "image_jpeg": Case("image", "image_vit_base.yaml", "JPEG", photos("jpeg")),
    "image_png": Case("image", "image_vit_base.yaml", "PNG", photos("png")),
    "xray_dicom": Case("medical.xray", "medical_xray_vit_base.yaml", "DICOM uncompressed", radiographs("uncompressed")),
    "xray_rle": Case("medical.xray", "medical_xray_vit_base.yaml", "DICOM RLE", radiographs("rle")),
    "xray_j2k": Case("medical.xray", "medical_xray_vit_base.yaml", "DICOM JPEG 2000", radiographs("jpeg2000")),
    "ct_nifti": Case("medical.ct", "medical_ct_vit_base.yaml", "NIfTI gz", ct_niftis),
    "ct_series": Case("medical.ct", "medical_ct_vit_base.yaml", "DICOM series", ct_series),
    "rs_cog": Case("remote_sensing.multispectral", "remote_sensing_multispectral_vit_base.yaml", "COG", cogs),
    "rs_s2_jp2": Case("remote_sensing.multispectral", "remote_sensing_multispectral_vit_base.yaml",
                      "S2 JPEG 2000 bands", s2_jp2_bands),
    "micro_ome_tiff": Case("microscopy.channel_agnostic", "microscopy_cell_painting_vit_small.yaml", "OME-TIFF", ome_tiffs),
    "micro_ome_zarr": Case("microscopy.channel_agnostic", "microscopy_cell_painting_vit_small.yaml", "OME-Zarr", ome_zarrs),
}
QUICK_CASES = ("image_jpeg", "xray_rle", "ct_nifti", "rs_cog", "micro_ome_tiff")


# ----- measurement -----------------------------------------------------------------------------------
def load_run_config(case: Case, sources: list[str], extra: list[str], args: argparse.Namespace):
    from mae_domains.config import load_config

    overrides = [f"data.sources={sources}", "data.stats_samples=8", *extra]
    if args.quick:
        overrides.append("data.options.chips_per_scene=16" if case.adapter.startswith("remote_sensing") else
                         "data.options.crops_per_image=16" if case.adapter.startswith("microscopy") else
                         "data.options.crops_per_volume=8" if case.adapter == "medical.ct" else "data.seed=0")
    return load_config(str(ROOT / "configs" / case.recipe), [o for o in overrides if o != "data.seed=0"])


def samples_per_second(config, workers: int, args: argparse.Namespace) -> tuple[float, int]:
    """Samples/s of the engine's pretraining loader over ``--batches`` batches after ``--warmup``, the best of
    ``--repeat`` runs. With 0 workers torch runs on one thread, as in a loader worker: the figure is one core's."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1 if workers == 0 else threads)
    try:
        return max(_samples_per_second(config, workers, args) for _ in range(args.repeat))
    finally:
        torch.set_num_threads(threads)


def _samples_per_second(config, workers: int, args: argparse.Namespace) -> tuple[float, int]:
    from mae_domains.data.loaders import pretraining_loader, sample_signatures
    from mae_domains.shards import open_archive
    from mae_domains.registry import get_adapter

    adapter = get_adapter(config.adapter, config.data.options).bind(config)
    reader, refs = open_archive(adapter, config.data.sources)
    stats = reader.compute_stats(refs, config.data.stats_samples, 0)
    batch = min(args.batch, len(refs))
    loader = pretraining_loader(reader, refs, stats, batch_size=batch, seed=0, num_workers=workers,
                                max_steps=args.warmup + args.batches, signatures=sample_signatures(reader, refs))
    counted, start = 0, None
    for step, got in enumerate(loader):
        if step == args.warmup - 1 or (args.warmup == 0 and start is None):
            start = time.perf_counter()
            if args.warmup:
                continue
        if step >= args.warmup:
            counted += len(got["image"])
    return counted / (time.perf_counter() - start), int(np.prod(got["image"].shape[1:]))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small archives, five cases, 0 and 1 worker")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES))
    parser.add_argument("--workers", type=int, nargs="+")
    parser.add_argument("--files", type=int, default=None, help="source files (2D) or 8x that many (scenes, volumes)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=None, help="batches counted")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure, the best counted (a shared machine)")
    parser.add_argument("--shards", action="store_true", help="also prepare each archive and read its shards")
    parser.add_argument("--gpu-rate", type=float, default=1500.0, help="samples/s one GPU consumes (2D, 224 px)")
    parser.add_argument("--gpu-rate-ct", type=float, default=100.0, help="96^3 crops/s one GPU consumes (CT)")
    args = parser.parse_args(argv)
    cases = args.cases or (list(QUICK_CASES) if args.quick else list(CASES))
    workers = args.workers or ([0, 1] if args.quick else [0, 1, 2])
    args.files = args.files or (24 if args.quick else 64)
    args.batches = args.batches or (3 if args.quick else 8)
    logging.basicConfig(level=logging.ERROR)
    print(f"{os.cpu_count()} cores here; batch {args.batch}, {args.batches} batches counted after {args.warmup}; "
          f"a GPU consumes {args.gpu_rate:.0f} samples/s (2D, 224 px) or {args.gpu_rate_ct:.0f} crops/s (CT 96^3)")
    header = f"{'adapter':<29} {'encoding':<20} {'from':<6} {'workers':>7} {'samples/s':>10} {'per core':>9} {'cores for GPU':>13}"
    print(header + "\n" + "-" * len(header), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in cases:
            case = CASES[name]
            folder = Path(tmp) / name
            extra = case.write(folder, args.files, args.quick)
            raw_config = load_run_config(case, [str(folder)], extra, args)
            sources = {"raw": raw_config}
            if args.shards:
                from mae_domains.shards import prepare_archive

                shards = Path(tmp) / f"{name}_shards"
                summary = prepare_archive(raw_config, shards, workers=max(workers), progress=False)
                sources["shards"] = load_run_config(case, [str(shards)], extra, args)
                print(f"  {name}: shards {folder_bytes(shards) / 2**20:.1f} MiB for {summary.decoded_bytes / 2**20:.1f} "
                      f"MiB decoded ({summary.compression}); source files {folder_bytes(folder) / 2**20:.1f} MiB; "
                      f"prepared in {summary.seconds:.1f} s", flush=True)
            gpu = args.gpu_rate_ct if case.adapter == "medical.ct" else args.gpu_rate
            for origin, config in sources.items():
                for w in workers:
                    rate, _ = samples_per_second(config, w, args)
                    per_core = rate / max(1, w)
                    print(f"{case.adapter:<29} {case.encoding:<20} {origin:<6} {w:>7} {rate:>10.1f} {per_core:>9.1f} "
                          f"{gpu / per_core:>13.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
