"""Evaluation at the trainer's CPU settings: frozen features (kNN, linear probe, ``embed``) and fine-tuning
steps in fp32 and bf16, with and without retained host memory (``engine.retain_host_memory``), each
setting in a fresh process (malloc settings cannot be undone), rounds interleaved.

The model is the image adapter's grid MAE encoder (``--preset``, 224 px); features go through
:func:`mae_domains.evaluation.features.extract_features` with the adapter's embedding (as ``evaluate`` and
``embed`` do), fine-tuning through :func:`mae_domains.evaluation.finetune.finetune` (layer decay, AdamW,
mixup off). Inputs are generated tensors: the loader is not timed. Printed: images/s per setting, the
median over rounds, and the ratio against fp32 without retained memory (evaluation's setting before).

    python benchmarks/bench_evaluation_speed.py                       # ViT-S, batch 32, 2 rounds
    python benchmarks/bench_evaluation_speed.py --preset base --batch 64 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

SETTINGS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def measure(job: dict) -> dict:
    """Images/s of features and of fine-tuning for one (precision, retain) setting, in this process."""
    import torch

    from mae_domains.config import load_config
    from mae_domains.host_memory import retain_freed_host_memory
    from mae_domains.evaluation.features import extract_features
    from mae_domains.evaluation.finetune import FinetuneConfig, finetune
    from mae_domains.registry import get_adapter

    if job["retain"]:
        retain_freed_host_memory()
    config = load_config(None, ["adapter=image", f"model.preset={job['preset']}", f"model.img_size={job['img']}"])
    adapter = get_adapter("image").bind(config)
    torch.manual_seed(0)
    model = adapter.build_model(config.model, config.mask).eval()
    g = torch.Generator().manual_seed(1)
    batches = [{"image": torch.randn(job["batch"], 3, job["img"], job["img"], generator=g),
                "label": torch.randint(0, 10, (job["batch"],), generator=g)} for _ in range(job["batches"] + 1)]
    device = torch.device("cpu")

    def embed(batch, dev):
        return adapter.embed(model, batch, dev, "cls")

    extract_features(model, batches[:1], device, job["precision"], embed_batch=embed, progress=False)  # warm-up
    start = time.perf_counter()
    extract_features(model, batches[1:], device, job["precision"], embed_batch=embed, progress=False)
    features = job["batch"] * job["batches"] / (time.perf_counter() - start)

    encoder = model.encoder
    settings = dict(epochs=1, warmup_epochs=0, mixup=0.0, cutmix=0.0, precision=job["precision"], device="cpu")
    finetune(encoder, batches[:1], None, 10, FinetuneConfig(**settings), progress=False,
             batch_fn=adapter.grid_batch)  # warm-up
    start = time.perf_counter()
    finetune(encoder, batches[1:], None, 10, FinetuneConfig(**settings), progress=False, batch_fn=adapter.grid_batch)
    tuning = job["batch"] * job["batches"] / (time.perf_counter() - start)
    return {"features": features, "finetune": tuning}


def run_fresh(job: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--job", json.dumps(job)], capture_output=True, text=True,
                         timeout=1800)
    if out.returncode:
        raise SystemExit(f"setting {job} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--img", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=3, help="timed batches after one warm-up batch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        print(json.dumps(measure(json.loads(args.job))))
        return 0
    from mae_domains.device import cpu_native_bf16

    print(f"{os.cpu_count()} cores; ViT-{args.preset} at {args.img} px, batch {args.batch}, {args.batches} batches "
          f"timed per setting, {args.rounds} interleaved rounds; native bf16: {cpu_native_bf16()}", flush=True)
    rates: dict[tuple[str, bool], list[dict]] = {s: [] for s in SETTINGS}
    for r in range(args.rounds):
        for precision, retain in (SETTINGS if r % 2 == 0 else SETTINGS[::-1]):
            job = dict(preset=args.preset, img=args.img, batch=args.batch, batches=args.batches,
                       precision=precision, retain=retain)
            rate = run_fresh(job)
            rates[(precision, retain)].append(rate)
            print(f"  round {r}: {precision}, retained memory {'on ' if retain else 'off'}: features "
                  f"{rate['features']:.1f} img/s, fine-tuning {rate['finetune']:.1f} img/s", flush=True)
    base = {k: statistics.median(r[k] for r in rates[("fp32", False)]) for k in ("features", "finetune")}
    print(f"\n{'setting':<30} {'features img/s':>15} {'vs before':>10} {'fine-tune img/s':>16} {'vs before':>10}")
    for (precision, retain), values in rates.items():
        f = statistics.median(v["features"] for v in values)
        t = statistics.median(v["finetune"] for v in values)
        name = f"{precision}, retained {'on' if retain else 'off'}"
        print(f"{name:<30} {f:>15.1f} {f / base['features']:>9.2f}x {t:>16.1f} {t / base['finetune']:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
