"""Does the loader keep up? Pretraining on real files through the real Trainer and loader, one adapter
per domain, in fp32 and bf16, with the recipe's loader workers and with none.

Cases (files generated in a temporary folder, each adapter's recipe from ``configs/``):

- ``remote_sensing.multispectral``: 10-band Sentinel-2 GeoTIFFs (uint16, band names in the band
  descriptions), SatMAE band groups, ViT-B/8 on 96 px chips;
- ``medical.ct``: NIfTI abdomen phantoms (int16 HU, 0.8 x 0.8 x 2.5 mm), resampled and cached by the
  adapter (the cache is filled by a first, untimed run, as after the first epoch of a real run);
- ``microscopy.channel_agnostic``: 5-channel Cell Painting OME-TIFFs (uint16), ViT-S/16 on 256 px crops.

Each run is ``pretrain()`` with the recipe (batch lowered to ``--batch``, no gradient accumulation;
``--preset`` can shrink the model), ``--steps`` steps of which the first ``--warmup`` are not counted
(worker start-up, first allocations). From the engine's per-step log: step time, data time (waiting for
the next batch) and its share of the step (target under 10 %), samples/s; and the step time with the
recipe's workers over the step time with 0 workers (target >= 0.9: workers must not slow the model down).

    python benchmarks/bench_adapter_step.py
    python benchmarks/bench_adapter_step.py --cases microscopy --batch 16 --steps 12 --precisions bf16
    python benchmarks/bench_adapter_step.py --preset micro --set model.decoder_embed_dim=64 model.decoder_depth=1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "remote_sensing": ("remote_sensing.multispectral", "remote_sensing_multispectral_vit_base.yaml"),
    "medical": ("medical.ct", "medical_ct_vit_base.yaml"),
    "microscopy": ("microscopy.channel_agnostic", "microscopy_cell_painting_vit_small.yaml"),
}
CELL_PAINTING = ("DNA", "RNA", "ER", "AGP", "Mito")


def write_geotiffs(folder: Path, count: int, size: int) -> None:
    import rasterio
    from rasterio.transform import from_origin

    from mae_remote_sensing.bands import DEFAULT_BANDS
    from mae_remote_sensing.synthetic import synthetic_scene

    bands = list(DEFAULT_BANDS)
    for i in range(count):
        scene, valid = synthetic_scene(i, bands, size, size, nodata_corner=False)
        profile = dict(driver="GTiff", width=size, height=size, count=len(bands), dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(500000.0 + 10 * size * i, 5800000.0, 10.0, 10.0),
                       nodata=0, tiled=True, blockxsize=256, blockysize=256)
        with rasterio.open(folder / f"s2_{i:03d}.tif", "w", **profile) as dst:
            dst.write(np.clip(scene, 1, 65535).astype(np.uint16))
            for b, name in enumerate(bands, start=1):
                dst.set_band_description(b, name)


def write_niftis(folder: Path, count: int, shape: tuple[int, int, int]) -> None:
    import nibabel as nib

    from mae_medical.volume_phantoms import abdomen_phantom

    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    for i in range(count):
        hu, _ = abdomen_phantom(i, shape)  # (z, y, x)
        nib.save(nib.Nifti1Image(np.flip(hu.transpose(2, 1, 0), (0, 1)).astype(np.int16), affine),
                 str(folder / f"ct_{i:03d}.nii.gz"))


def write_ome_tiffs(folder: Path, count: int, size: int) -> None:
    import tifffile

    from mae_microscopy.synthetic import synthetic_field

    metadata = {"axes": "CYX", "Channel": {"Name": list(CELL_PAINTING)}, "PhysicalSizeX": 0.65,
                "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.65, "PhysicalSizeYUnit": "µm"}
    tiles = size // 256
    for i in range(count):  # 256 px tiles of 8 cells each (one big field would cost cells x pixels memory)
        rows = [np.concatenate([synthetic_field(i * 100 + r * tiles + c, CELL_PAINTING, 256, 256, cells=8)
                                for c in range(tiles)], axis=2) for r in range(tiles)]
        field = np.concatenate(rows, axis=1)
        tifffile.imwrite(folder / f"field_{i:03d}.ome.tif", field, ome=True, photometric="minisblack",
                         metadata=metadata, tile=(256, 256))


def make_archive(case: str, folder: Path, args: argparse.Namespace) -> list[str]:
    """Files for ``case``; returns extra config overrides (a cache folder for CT)."""
    folder.mkdir(parents=True, exist_ok=True)
    if case == "remote_sensing":
        write_geotiffs(folder, args.files, 512)
        return []
    if case == "medical":
        write_niftis(folder, max(2, args.files // 2), (80, 192, 192))
        return [f"data.options.cache_dir={folder.parent / 'ct_cache'}"]
    write_ome_tiffs(folder, args.files, 512)
    return []


def run(case: str, archive: Path, extra: list[str], run_dir: Path, precision: str, workers: int | None,
        args: argparse.Namespace) -> dict:
    """One pretraining run; per-step figures after the warm-up steps."""
    from mae_domains.config import load_config
    from mae_domains.engine import pretrain
    from mae_domains.engine.trainer import Trainer

    adapter_name, recipe = CASES[case]
    overrides = [f"data.sources=[{archive}]", f"engine.batch_size={args.batch}", f"engine.max_steps={args.steps}",
                 f"engine.precision={precision}", "engine.checkpoint_every=1000000", "engine.log_every=1",
                 "engine.figure_every=0", "data.stats_samples=16", "optim.accum_steps=1", *extra]
    if workers is not None:
        overrides.append(f"data.num_workers={workers}")
    if args.preset:
        overrides.append(f"model.preset={args.preset}")
    overrides.extend(args.set)
    cfg = load_config(str(ROOT / "configs" / recipe), overrides)
    rows: list[dict] = []
    resolved: dict[str, str] = {}
    real_prepare = Trainer.prepare

    def prepare(trainer: Trainer) -> None:  # note what the engine resolved (precision, threads)
        real_prepare(trainer)
        resolved.update(precision=trainer.precision.name, threads=str(trainer.threads))

    Trainer.prepare = prepare  # type: ignore[method-assign]
    try:
        pretrain(cfg, run_dir, on_step=lambda step, row: rows.append(row), overwrite=True)
    finally:
        Trainer.prepare = real_prepare  # type: ignore[method-assign]
    counted = rows[args.warmup:]
    step = statistics.median(float(r["step_time"]) for r in counted)
    data = statistics.median(float(r["data_time"]) for r in counted)
    share = sum(float(r["data_time"]) for r in counted) / sum(float(r["step_time"]) for r in counted)
    return {"workers": cfg.data.num_workers, "step": step, "data": data, "share": share,
            "samples_per_s": args.batch / step, **resolved}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=8, help="per-step batch (the recipes' 24-128 are for big machines)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2, help="first steps not counted")
    parser.add_argument("--files", type=int, default=8, help="files per archive (CT: half as many volumes)")
    parser.add_argument("--preset", help="override the recipes' encoder preset (e.g. small) for a quicker run")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more config overrides for every run, e.g. model.decoder_depth=2")
    parser.add_argument("--no-zero-workers", action="store_true", help="skip the 0-worker comparison runs")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    print(f"# pretraining through Trainer + loader, batch {args.batch}, median of steps {args.warmup + 1}..{args.steps}; "
          f"cores {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}")
    print("| adapter | precision | workers | threads | step s | data s/step | data share | samples/s | "
          "step(0 workers) s | step ratio 0w/default |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench_adapter_step_") as tmp:
        root = Path(tmp)
        for case in args.cases:
            archive = root / case
            extra = make_archive(case, archive, args)
            if case == "medical":  # fill the volume cache once, as the first epoch of a real run does
                warm = argparse.Namespace(**{**vars(args), "steps": 1, "warmup": 0})
                run(case, archive, extra, root / "warm", "fp32", 0, warm)
            for precision in args.precisions:
                default = run(case, archive, extra, root / f"{case}_{precision}", precision, None, args)
                zero = None if args.no_zero_workers else run(case, archive, extra, root / f"{case}_{precision}_0w",
                                                             precision, 0, args)
                zero_step = "-" if zero is None else f"{zero['step']:.3f}"
                ratio = "-" if zero is None else f"{zero['step'] / default['step']:.2f}"
                print(f"| {CASES[case][0]} | {default.get('precision', precision)} | {default['workers']} | "
                      f"{default.get('threads', '?')} | {default['step']:.3f} | {default['data']:.4f} | "
                      f"{100 * default['share']:.1f} % | {default['samples_per_s']:.2f} | "
                      f"{zero_step} | {ratio} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
