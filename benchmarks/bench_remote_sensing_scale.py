"""Scale-MAE (``remote_sensing.scale``) against the plain band-group model (``remote_sensing.multispectral``).

    python benchmarks/bench_remote_sensing_scale.py steps [--preset small] [--img-size 64] [--batch 16]
    python benchmarks/bench_remote_sensing_scale.py knn [--steps 300] [--preset micro] [--img-size 64]

``steps``: pretraining step time (forward, backward, AdamW step) of both models at equal size: the same
bands (one band group, so both grids have the same tokens), preset, chip, patch and batch.

``knn``: both models pretrained with the same budget (steps, batch, learning rate, data) on generated
scenes whose classes differ only in *physical* scale: fields of 40, 80, 160 or 320 m drawn at a random
GSD between 5 and 20 m, so a field's size in pixels is ambiguous without the GSD (80 m at 10 m looks like
160 m at 20 m). Then the ``knn_multiscale`` protocol (CLS features, cosine, k=20, T=0.07) at several
input scales with the matching GSD. Prints Markdown tables; numbers are whatever comes out.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from mae_domains.config import load_config
from mae_domains.evaluation import run_protocol
from mae_domains.registry import get_adapter
from mae_remote_sensing.synthetic import reflectance

BANDS = ["B2", "B3", "B4", "B8"]
WAVELENGTHS = [490.0, 560.0, 665.0, 842.0]
FIELD_SIZES_M = (40.0, 80.0, 160.0, 320.0)
GSD_RANGE_M = (5.0, 20.0)


def build(name: str, preset: str, img_size: int, patch: int, lr_overrides=(), seed: int = 0):
    """The adapter bound to a config and its model (both models see ``BANDS`` as one band group)."""
    options = {"bands": BANDS}
    if name == "remote_sensing.multispectral":
        options["groups"] = [BANDS]
    adapter = get_adapter(name, options)
    config = load_config(None, [f"adapter={name}", f"model.preset={preset}", f"model.img_size={img_size}",
                                f"model.patch_size={patch}", *lr_overrides], base={"data": {"options": options}})
    adapter.bind(config)
    torch.manual_seed(seed)
    return adapter, adapter.build_model(config.model, config.mask)


# ----- generated scenes with scale-dependent structure -------------------------------------------------
def field_chip(rng: np.random.Generator, field_m: float, gsd: float, size: int) -> np.ndarray:
    """``(4, size, size)`` reflectance: a rotated grid of square fields ``field_m`` wide, each vegetation or
    bare soil, sampled at ``gsd`` metres (2 x 2 supersampling), with sensor noise."""
    sub = 2
    coords = (np.arange(size * sub) + 0.5) / sub * gsd
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    theta = rng.uniform(0, math.pi / 2)
    u = np.cos(theta) * xx + np.sin(theta) * yy + rng.uniform(0, field_m)
    v = -np.sin(theta) * xx + np.cos(theta) * yy + rng.uniform(0, field_m)
    iu, iv = np.floor(u / field_m).astype(np.int64), np.floor(v / field_m).astype(np.int64)
    salt = int(rng.integers(1 << 30))
    veg = (((iu * 73856093) ^ (iv * 19349663) ^ salt) >> 3) % 2 == 0
    image = np.empty((4, size, size), np.float32)
    for c, wave in enumerate(WAVELENGTHS):
        values = np.where(veg, reflectance("vegetation", wave), reflectance("soil", wave))
        image[c] = values.reshape(size, sub, size, sub).mean(axis=(1, 3))
    return image + 0.01 * rng.standard_normal(image.shape).astype(np.float32)


def field_batch(rng: np.random.Generator, count: int, size: int, mean: np.ndarray, std: np.ndarray):
    """A normalized batch with a random class and a log-uniform GSD per chip."""
    labels = rng.integers(0, len(FIELD_SIZES_M), count)
    gsds = np.exp(rng.uniform(*np.log(GSD_RANGE_M), count))
    images = np.stack([field_chip(rng, FIELD_SIZES_M[c], g, size) for c, g in zip(labels, gsds)])
    images = (images - mean[None, :, None, None]) / std[None, :, None, None]
    return {"image": torch.from_numpy(images.astype(np.float32)), "valid": torch.ones(count, size, size, dtype=torch.bool),
            "meta": [{"gsd": [float(g), float(g)]} for g in gsds], "label": torch.from_numpy(labels),
            "mask_seed": [int(s) for s in rng.integers(0, 2**31, count)]}


def band_stats(size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(123)
    chips = np.stack([field_chip(rng, FIELD_SIZES_M[i % 4], 10.0, size) for i in range(32)])
    return chips.mean(axis=(0, 2, 3)), chips.std(axis=(0, 2, 3))


def pretrain(adapter, model, steps: int, batch: int, size: int, lr: float, stats, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)  # the same data stream for every model
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
    model.train()
    loss = math.nan
    for step in range(steps):
        for group in optimizer.param_groups:  # linear warmup over the first 10%, then constant
            group["lr"] = lr * min(1.0, (step + 1) / max(1, steps // 10))
        out = model(**adapter.model_inputs(field_batch(rng, batch, size, *stats), torch.device("cpu")))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        loss = float(out.loss.detach())
    return loss


def knn_table(args) -> None:
    stats = band_stats(args.img_size)
    rng = np.random.default_rng(7 + 1000 * args.seed)
    train = [field_batch(rng, 50, args.img_size, *stats) for _ in range(args.train_chips // 50)]
    test = [field_batch(rng, 50, args.img_size, *stats) for _ in range(args.test_chips // 50)]
    rows = []
    for name in ("remote_sensing.scale", "remote_sensing.multispectral"):
        adapter, model = build(name, args.preset, args.img_size, args.patch, seed=args.seed)
        start = time.perf_counter()
        loss = pretrain(adapter, model, args.steps, args.batch, args.img_size, args.lr, stats, seed=args.seed)
        seconds = time.perf_counter() - start
        records = run_protocol("knn_multiscale", train, test, encoder=model.encoder, grid_batch=adapter.grid_batch,
                               settings={"scales": args.scales}, class_names=[f"{int(s)} m" for s in FIELD_SIZES_M],
                               device="cpu")
        rows.append((name, loss, seconds, {r.metric: r.value for r in records}))
    keys = [k for k in rows[0][3] if k != "top1_mean"] + ["top1_mean"]
    print(f"\nkNN top-1 (k=20, T=0.07, CLS) on field-size classes {list(FIELD_SIZES_M)} m, GSD {GSD_RANGE_M} m; "
          f"{args.steps} steps x {args.batch} chips, preset {args.preset}, {args.img_size} px, patch {args.patch}; "
          f"{args.train_chips} train / {args.test_chips} test chips; seed {args.seed}; chance {1 / len(FIELD_SIZES_M):.2f}\n")
    print("| model | final loss | pretrain s | " + " | ".join(keys) + " |")
    print("|---|---|---|" + "---|" * len(keys))
    for name, loss, seconds, summary in rows:
        print(f"| {name} | {loss:.4f} | {seconds:.0f} | " + " | ".join(f"{summary[k]:.3f}" for k in keys) + " |")


def step_table(args) -> None:
    """Both models step in turn (A, B, A, B ...), so a busy machine slows both alike; CPU time of the
    process (``time.process_time``) is reported beside wall time, as it is far less sensitive to other load."""
    stats = band_stats(args.img_size)
    names = ("remote_sensing.multispectral", "remote_sensing.scale")
    models, batches, optimizers = {}, {}, {}
    for name in names:
        adapter, model = build(name, args.preset, args.img_size, args.patch)
        rng = np.random.default_rng(0)  # the same chips for both
        models[name] = model
        optimizers[name] = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batches[name] = [adapter.model_inputs(field_batch(rng, args.batch, args.img_size, *stats), torch.device("cpu"))
                         for _ in range(args.repeats + 2)]
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    tokens: dict[str, int] = {}
    for i in range(args.repeats + 2):
        for name in names:
            start, start_cpu = time.perf_counter(), time.process_time()
            out = models[name](**batches[name][i])
            optimizers[name].zero_grad(set_to_none=True)
            out.loss.backward()
            optimizers[name].step()
            if i >= 2:  # two warm-up steps
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
            tokens[name] = out.mask.shape[1]
    base_cpu, base_wall = (1000 * float(np.median(t[names[0]])) for t in (cpu, wall))
    print(f"\nPretraining step (forward + backward + AdamW) on CPU, {torch.get_num_threads()} thread(s): preset "
          f"{args.preset}, {len(BANDS)} bands (one group), {args.img_size} px, patch {args.patch}, batch {args.batch}, "
          f"median of {args.repeats} interleaved steps\n")
    print("| adapter | tokens | params (M) | CPU ms / step | vs multispectral | wall ms / step | vs multispectral |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        params = sum(p.numel() for p in models[name].parameters()) / 1e6
        c, w = 1000 * float(np.median(cpu[name])), 1000 * float(np.median(wall[name]))
        print(f"| {name} | {tokens[name]} | {params:.2f} | {c:.0f} | {c / base_cpu:.2f}x | {w:.0f} | {w / base_wall:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["steps", "knn"])
    parser.add_argument("--preset", default=None, help="default: small (steps), micro (knn)")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--batch", type=int, default=None, help="default: 16 (steps), 32 (knn)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-chips", type=int, default=400)
    parser.add_argument("--test-chips", type=int, default=200)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--seed", type=int, default=0, help="model initialization and data (knn)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on a shared machine more threads spin and run slower)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part == "steps":
        args.preset, args.batch = args.preset or "small", args.batch or 16
        step_table(args)
    else:
        args.preset, args.batch = args.preset or "micro", args.batch or 32
        knn_table(args)


if __name__ == "__main__":
    main()
