"""Does the default loader-worker count cost compute? Pretraining steps through the real engine
(:func:`mae_domains.engine.pretrain`) on generated JPEG files, with ``data.num_workers`` 0 and the
recipe default (2), alternating runs.

The engine gives the model ``cores // local processes`` threads whatever the worker count: workers
sleep while the prefetched batches wait, and decode a batch in a small part of a step. Printed per run:
the median step time (first steps dropped: start-up), data time per step and its share of the step; then
the median ratio of the step rates (workers over none, target >= 0.9) over the alternating pairs.

    python benchmarks/bench_loader_workers.py                                     # ViT-S, batch 16
    python benchmarks/bench_loader_workers.py --preset base --batch 32 --steps 8  # the issue's step
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def write_jpegs(folder: Path, count: int, size: int, seed: int = 0) -> None:
    """Smooth colour images with noise, ``size`` px, saved as JPEG (the decoding work of a photo archive)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        freq = rng.uniform(1, 8, (3, 2))
        image = np.stack([np.sin(freq[c, 0] * 6.3 * xx + freq[c, 1] * 6.3 * yy) for c in range(3)], axis=-1)
        image = (127 + 100 * image + rng.normal(0, 10, image.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"img{i:05d}.jpg", quality=90)


def run(archive: Path, run_dir: Path, workers: int, args: argparse.Namespace) -> tuple[float, float, int]:
    """Median step time and data time (s) over the steps after ``--skip``, and the engine's thread count."""
    from mae_domains.config import load_config
    from mae_domains.engine import pretrain
    from mae_domains.engine.run_files import read_csv

    config = load_config(None, [
        f"model.preset={args.preset}", f"model.img_size={args.img}", "model.decoder=cross", "model.query=0.25",
        f"engine.batch_size={args.batch}", f"engine.max_steps={args.steps}", "engine.log_every=1",
        "engine.checkpoint_every=100000", "engine.figure_every=0", f"engine.precision={args.precision}",
        "engine.device=cpu", f"data.num_workers={workers}", "data.stats_samples=16", f"data.sources=[{archive}]",
    ])
    result = pretrain(config, run_dir, overwrite=True)
    if result.stopped_by:
        raise SystemExit(f"the run was stopped by {result.stopped_by} after step {result.steps}; run the benchmark again")
    rows = read_csv(run_dir / "metrics.csv")[args.skip:]
    import torch

    return (statistics.median(float(r["step_time"]) for r in rows),
            statistics.median(float(r["data_time"]) for r in rows), torch.get_num_threads())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--img", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--skip", type=int, default=2, help="first steps left out (start-up, worker spawn)")
    parser.add_argument("--pairs", type=int, default=2, help="alternating (0 workers, default workers) pairs")
    parser.add_argument("--workers", type=int, default=2, help="the recipe default")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--files", type=int, default=256)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive"
        write_jpegs(archive, args.files, int(args.img * 1.15))
        print(f"{os.cpu_count()} cores; {args.preset} cross decoder, {args.img} px, batch {args.batch}, "
              f"{args.steps} steps per run (first {args.skip} dropped), precision {args.precision}", flush=True)
        ratios = []
        for pair in range(args.pairs):
            times = {}
            for workers in ((0, args.workers) if pair % 2 == 0 else (args.workers, 0)):
                step, data, threads = run(archive, Path(tmp) / f"run{workers}", workers, args)
                times[workers] = step
                print(f"  pair {pair}: {workers} workers: step {step:.3f} s ({args.batch / step:.2f} img/s), data "
                      f"{data:.3f} s ({100 * data / step:.1f}% of the step), {threads} compute threads", flush=True)
            ratios.append(times[0] / times[args.workers])
        print(f"speed with {args.workers} workers over 0 workers: median x{statistics.median(ratios):.3f} "
              f"[{min(ratios):.3f}-{max(ratios):.3f}] (target >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
