"""Remote-sensing loader throughput: chips/s from a tiled COG and from a striped 10980 x 10980 GeoTIFF,
and pretraining samples/s with the real loader vs the same model fed from memory.

    python benchmarks/bench_remote_sensing_loader.py [--chip 224] [--seconds 10] [--steps 30]

Files are generated in a temporary folder (uint16, written block by block). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.windows import Window

from mae_domains.config import load_config
from mae_domains.data.dataset import ArchiveDataset, collate_items
from mae_domains.engine import pretrain
from mae_domains.registry import get_adapter
from mae_remote_sensing.bands import DEFAULT_BANDS
from mae_remote_sensing.multispectral import MultispectralAdapter
from mae_remote_sensing.synthetic import synthetic_scene

ORIGIN = (399960.0, 5900040.0)  # a Sentinel-2 tile corner in UTM 33N


def write_blocks(path: Path, bands: list[str], size: int, tiled: bool, block_rows: int = 512, seed: int = 0) -> Path:
    """A ``size`` x ``size`` uint16 GeoTIFF written in horizontal slabs of synthetic land cover."""
    profile = dict(driver="GTiff", width=size, height=size, count=len(bands), dtype="uint16", crs="EPSG:32633",
                   transform=from_origin(*ORIGIN, 10.0, 10.0), nodata=0)
    profile.update(dict(tiled=True, blockxsize=512, blockysize=512) if tiled else dict(tiled=False, blockysize=1))
    tile, _ = synthetic_scene(seed, bands, block_rows, min(size, 2048), nodata_corner=False)
    tile = tile.astype(np.uint16)
    with rasterio.open(path, "w", **profile) as dst:
        for i, name in enumerate(bands, start=1):
            dst.set_band_description(i, name)
        for row in range(0, size, block_rows):
            rows = min(block_rows, size - row)
            for col in range(0, size, tile.shape[2]):
                cols = min(tile.shape[2], size - col)
                dst.write(tile[:, :rows, :cols], window=Window(col, row, cols, rows))
    return path


def make_cog(folder: Path, size: int) -> Path:
    tiled = write_blocks(folder / "tiled.tif", list(DEFAULT_BANDS), size, tiled=True)
    with rasterio.open(tiled, "r+") as src:
        src.build_overviews([2, 4, 8], Resampling.average)
    cog = folder / "scene_cog.tif"
    rasterio.shutil.copy(tiled, cog, driver="COG", copy_src_overviews=True, blocksize=512)
    tiled.unlink()
    return cog


def bound_adapter(options: dict, chip: int, cls=None):
    config = load_config(None, ["adapter=remote_sensing.multispectral", f"model.img_size={chip}"],
                         base={"data": {"options": options}})
    adapter = (cls(options) if cls else get_adapter("remote_sensing.multispectral", options))
    return adapter.bind(config), config


def chips_per_second(path: Path, options: dict, chip: int, seconds: float, workers: int) -> tuple[float, int]:
    """Chips/s of read + train transform, in this process (workers=0) or through a DataLoader."""
    from torch.utils.data import DataLoader

    adapter, _ = bound_adapter({**options, "chips_per_scene": 100000, "jitter": 0.0}, chip)
    refs = adapter.discover([path])
    dataset = ArchiveDataset(adapter, refs, None, train=True)
    order = np.random.default_rng(0).permutation(len(refs))
    if workers == 0:
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            dataset[int(order[count % len(order)])]
            count += 1
        return count / (time.perf_counter() - start), count
    loader = DataLoader(dataset, batch_size=8, sampler=order.tolist(), num_workers=workers, collate_fn=collate_items,
                        persistent_workers=False, prefetch_factor=4, worker_init_fn=one_thread)
    iterator = iter(loader)
    for _ in range(2 * workers):  # worker start-up and first file opens excluded
        next(iterator)
    start, count = time.perf_counter(), 0
    for batch in iterator:
        count += batch["image"].shape[0]
        if time.perf_counter() - start >= seconds:
            break
    return count / (time.perf_counter() - start), count


def one_thread(_: int) -> None:
    """As the engine does: one torch thread per loader worker (2 cores are shared with the main process)."""
    import torch

    torch.set_num_threads(1)


class InMemoryAdapter(MultispectralAdapter):
    """The same adapter, but ``read`` returns chips read once beforehand (the from-memory baseline)."""

    cache: dict = {}

    def read(self, ref):
        key = (ref.frames[0].source, ref.draw)
        return InMemoryAdapter.cache[key]


def pretrain_rate(path: Path, chip: int, steps: int, batch: int, workers: int, from_memory: bool, run_dir: Path) -> float:
    options = {"chips_per_scene": steps * batch + batch}
    overrides = ["adapter=remote_sensing.multispectral", f"model.img_size={chip}", "model.preset=tiny",
                 "model.patch_size=16", "model.decoder_embed_dim=128", "model.decoder_depth=2",
                 "model.decoder_num_heads=4", f"engine.batch_size={batch}", f"engine.max_steps={steps}",
                 "engine.log_every=1", "engine.device=cpu", f"data.num_workers={workers}", "data.stats_samples=32",
                 "engine.checkpoint_every=100000"]
    config = load_config(None, overrides, base={"data": {"sources": [str(path)], "options": options}})
    adapter = None
    if from_memory:
        adapter = InMemoryAdapter(options).bind(config)
        real = MultispectralAdapter(options).bind(config)
        InMemoryAdapter.cache = {(r.frames[0].source, r.draw): real.read(r) for r in real.discover([path])}
    result = pretrain(config, run_dir, adapter=adapter)
    times = [float(row["step_time"]) for row in result.history[3:]]  # warm-up steps excluded
    return batch * len(times) / sum(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chip", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--cog-size", type=int, default=4096)
    parser.add_argument("--striped-size", type=int, default=10980)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train-chip", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_rs_") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        cog = make_cog(folder, args.cog_size)
        t1 = time.perf_counter()
        striped = write_blocks(folder / "T33UUP_20210615_B04_10m.tif", ["B4"], args.striped_size, tiled=False)
        t2 = time.perf_counter()
        print(f"generated {args.cog_size}^2 x 10-band COG in {t1 - t0:.1f}s, {args.striped_size}^2 striped "
              f"B04 in {t2 - t1:.1f}s ({striped.stat().st_size / 2**20:.0f} MiB)\n")
        print("| file | chip | loader | chips/s | chips |\n|---|---|---|---|---|")
        cases = [("tiled COG, 10 bands", cog, {}), ("striped GeoTIFF, 1 band", striped,
                                                    {"bands": ["B4"], "groups": [["B4"]], "layout": "multiband"})]
        for name, path, options in cases:
            for workers in (0, 2):
                rate, count = chips_per_second(path, options, args.chip, args.seconds, workers)
                where = "in process" if workers == 0 else f"DataLoader, {workers} workers"
                print(f"| {name} | {args.chip} | {where} | {rate:.1f} | {count} |")
        print(f"\npretraining (ViT-Ti, {args.train_chip} px chips, batch {args.batch}, {args.steps} steps, "
              f"{args.workers} loader worker(s), CPU {os.cpu_count()} cores)\n")
        real = pretrain_rate(cog, args.train_chip, args.steps, args.batch, args.workers, False, folder / "run_real")
        memory = pretrain_rate(cog, args.train_chip, args.steps, args.batch, args.workers, True, folder / "run_mem")
        print("| input | samples/s |\n|---|---|")
        print(f"| real loader (COG windows) | {real:.1f} |\n| from memory | {memory:.1f} |")
        print(f"\nreal / memory = {real / memory:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
