"""3D MAE pretraining step throughput and peak memory (ViT-B/16 on 96^3, ``configs/medical_ct_vit_base.yaml``),
each measured in a fresh process, and ``medical.ct`` loader volumes/s with a cold and a warm cache.

    python benchmarks/bench_medical_ct.py [--batch 2] [--steps 5] [--volumes 6] [--shape 80 192 192] [--device auto]

Step: a fresh Python process builds the recipe's model, runs 2 warm-up and ``--steps`` timed steps (AdamW,
bf16 autocast on GPUs that have it) on random 96^3 crops; peak memory is the process's peak RSS on CPU
(``ru_maxrss``) and ``torch.cuda.max_memory_allocated`` on a GPU. Loader: ``--volumes`` NIfTI CT
volumes of ``--shape`` (z, y, x) voxels at 0.8 x 0.8 x 2.5 mm are generated, then read through the adapter
(RAS, resampling to 1.5 x 1.5 x 2.0 mm, abdomen window, foreground crop, one random 96^3 crop) with an
empty cache (cold: decode + resample + write) and again from a fresh adapter on the same cache (warm,
as after a restart). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def step_child(batch: int, steps: int, device_name: str) -> dict:
    """Runs in the fresh process: the recipe's model and timed steps."""
    from mae_domains.config import load_config
    from mae_domains.device import select_device
    from mae_domains.registry import get_adapter

    config = load_config(str(ROOT / "configs" / "medical_ct_vit_base.yaml"), ["data.options.cache_dir=none"])
    adapter = get_adapter("medical.ct", dict(config.data.options))
    adapter.bind(config)
    device = select_device(device_name)
    model = adapter.build_model(config.model, config.mask).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    size = config.model.img_size
    images = torch.rand(batch, 1, size, size, size, device=device)
    meta = {"spacing": torch.tensor([[2.0, 1.5, 1.5]] * batch, dtype=torch.float64, device=device)}
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    from mae_domains.grid import GridBatch

    def step(i: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(GridBatch(images, None, meta), mask_seeds=list(range(i * batch, (i + 1) * batch)))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    for i in range(2):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(steps):
        step(i + 2)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {"device": str(device), "batch": batch, "steps": steps, "s_per_step": elapsed / steps,
            "crops_per_s": batch * steps / elapsed, "peak_mib": peak, "params_m": params, "bf16": bf16,
            "threads": torch.get_num_threads()}


def run_step_fresh(batch: int, steps: int, device: str) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_medical_ct as b; "
            f"print('RESULT', json.dumps(b.step_child({batch}, {steps}, {device!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def write_volumes(folder: Path, count: int, shape: tuple[int, int, int]) -> list[Path]:
    from mae_medical.volume_phantoms import abdomen_phantom

    paths = []
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])  # LPS-like storage, as many scanners' NIfTI conversions
    for i in range(count):
        hu, _ = abdomen_phantom(i, shape)
        path = folder / f"ct_{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(np.flip(hu.transpose(2, 1, 0), (0, 1)).astype(np.int16), affine), str(path))
        paths.append(path)
    return paths


def loader_rate(folder: Path, cache: Path) -> dict:
    from mae_domains.config import load_config
    from mae_domains.data.dataset import ArchiveDataset
    from mae_medical.ct import CTAdapter

    adapter = CTAdapter({"cache_dir": str(cache), "crops_per_volume": 1})
    adapter.bind(load_config(str(ROOT / "configs" / "medical_ct_vit_base.yaml"), []))
    refs = adapter.discover([folder])
    dataset = ArchiveDataset(adapter, refs, adapter.compute_stats(refs), train=True, seed=0)
    start = time.perf_counter()
    for i in range(len(refs)):
        assert not dataset[i]["skipped"]
    elapsed = time.perf_counter() - start
    return {"volumes": len(refs), "seconds": elapsed, "volumes_per_s": len(refs) / elapsed,
            "hits": adapter.cache.hits, "misses": adapter.cache.misses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--volumes", type=int, default=6)
    parser.add_argument("--shape", type=int, nargs=3, default=[80, 192, 192])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-step", action="store_true")
    args = parser.parse_args()
    if not args.skip_step:
        r = run_step_fresh(args.batch, args.steps, args.device)
        print("| model | device | batch | s/step | crops/s | peak memory (MiB) | params (M) | bf16 | threads |")
        print("|---|---|---|---|---|---|---|---|---|")
        print(f"| ViT-B/16 3D MAE, 96^3, mask 0.75 | {r['device']} | {r['batch']} | {r['s_per_step']:.3f} | "
              f"{r['crops_per_s']:.2f} | {r['peak_mib']:.0f} | {r['params_m']:.1f} | {r['bf16']} | {r['threads']} |")
        print()
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = Path(tmp) / "volumes", Path(tmp) / "cache"
        folder.mkdir()
        write_volumes(folder, args.volumes, tuple(args.shape))
        cold = loader_rate(folder, cache)
        warm = loader_rate(folder, cache)
        size = sum(p.stat().st_size for p in cache.glob("*.npy")) / 2**20
    print(f"| loader ({args.volumes} NIfTI volumes of {tuple(args.shape)} voxels) | volumes/s | seconds | cache hits/misses |")
    print("|---|---|---|---|")
    for name, r in (("cold cache (decode, RAS, resample, window, crop, write .npy)", cold),
                    ("warm cache (fresh adapter, .npy memory-mapped)", warm)):
        print(f"| {name} | {r['volumes_per_s']:.2f} | {r['seconds']:.2f} | {r['hits']}/{r['misses']} |")
    print(f"\ncache size: {size:.1f} MiB for {args.volumes} volumes")


if __name__ == "__main__":
    main()
