"""Peak memory of a pretraining step for every ViT preset, each measured in a fresh process.

One measurement = a new Python process that builds the GridMAE of a preset (2D patches, the preset's
default decoder, norm_pix targets, mask 0.75), runs ``--steps`` full steps (forward, backward, AdamW
update; the second step holds the AdamW moments during backward, as every later step does) and reports
its peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and, on CUDA,
``torch.cuda.max_memory_allocated``. A baseline process that imports the same modules and builds nothing
is subtracted from the RSS peaks.

Each configuration runs at two batch sizes: the difference of the peaks over the difference of the
batches is the memory per sample (activations, which is what activation checkpointing shrinks); the
rest is the per-process state (weights, gradients, AdamW moments, allocator slack).

    python benchmarks/bench_memory.py                          # all presets, fp32 and bf16, with and without
    python benchmarks/bench_memory.py --skip-huge --batches 2 4
    python benchmarks/bench_memory.py --presets base large --precisions bf16 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

MIB = 1024 * 1024
PRESETS = ("micro", "tiny", "small", "base", "large", "huge")


def peak_rss_bytes() -> int:
    """This process's peak resident set (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def import_modules() -> None:
    """What every measured process imports (so the baseline pays for the same libraries)."""
    import torch  # noqa: F401

    from mae_domains.engine.activation_checkpointing import enable_activation_checkpointing  # noqa: F401
    from mae_domains.models.embeddings.patch2d import PatchEmbed2D  # noqa: F401
    from mae_domains.models.grid_mae import build_grid_mae  # noqa: F401
    from mae_domains.optim import build_optimizer  # noqa: F401


def measure(job: dict) -> dict:
    """Run in the child process: build, train ``steps`` steps, return the peaks."""
    import_modules()
    import torch

    from mae_domains.engine.activation_checkpointing import enable_activation_checkpointing
    from mae_domains.models.embeddings.patch2d import PatchEmbed2D
    from mae_domains.models.grid_mae import build_grid_mae
    from mae_domains.models.presets import get_preset
    from mae_domains.optim import build_optimizer

    if job.get("baseline"):
        return {"rss": peak_rss_bytes()}
    if job.get("retain_host_memory"):
        from mae_domains.host_memory import retain_freed_host_memory

        retain_freed_host_memory()  # as the trainer does (engine.retain_host_memory)
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    device = torch.device(job["device"])
    width = get_preset(job["preset"]).embed_dim
    model = build_grid_mae(PatchEmbed2D(3, width, job["patch"]), preset=job["preset"], norm_pix_loss=True,
                           img_size=job["img"], patch_size=job["patch"]).to(device)
    if job["checkpointing"]:
        enable_activation_checkpointing(model)
    optimizer = build_optimizer(model, 1e-4, 0.05, (0.9, 0.95))
    images = torch.randn(job["batch"], 3, job["img"], job["img"], device=device)
    seeds = torch.arange(job["batch"])
    dtype = {"fp32": None, "bf16": torch.bfloat16}[job["precision"]]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(job["steps"]):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(images, mask_seeds=seeds).loss
        loss.float().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result = {"rss": peak_rss_bytes(), "params": sum(p.numel() for p in model.parameters()),
              "seconds_per_step": (time.perf_counter() - start) / job["steps"]}
    if device.type == "cuda":
        result["cuda"] = torch.cuda.max_memory_allocated(device)
    return result


def run_fresh(job: dict, timeout: float) -> dict:
    """``measure(job)`` in a new interpreter; an error or a timeout is reported, not raised."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or f"exit code {proc.returncode}").splitlines()
        return {"error": lines[-1][:120] if lines else f"exit code {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--skip-huge", action="store_true", help="leave ViT-H out (about 10 GB of state in fp32)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--checkpointing", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--batches", nargs=2, type=int, default=[2, 4], metavar=("B1", "B2"),
                        help="the two batch sizes whose difference gives the memory per sample")
    parser.add_argument("--img", type=int, default=224)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cuda" if _cuda_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch threads per measurement (default: torch's); "
                        "memory barely depends on it, time does")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    parser.add_argument("--release-host-memory", action="store_true",
                        help="leave malloc returning freed memory to the system (engine.retain_host_memory=false)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return 0
    b1, b2 = sorted(args.batches)
    if b1 < 1 or b1 == b2:
        parser.error("--batches needs two different sizes of at least 1")
    presets = [p for p in args.presets if not (args.skip_huge and p == "huge")]
    baseline = run_fresh({"baseline": True}, args.timeout)
    if "error" in baseline:
        print(f"baseline process failed: {baseline['error']}", file=sys.stderr)
        return 1
    print(f"# peak memory of {args.steps} pretraining steps, {args.img} px, patch {args.patch}, mask 0.75, "
          f"default decoder, AdamW; device {args.device}; torch threads per process: {args.threads or 'default'}; "
          f"freed host memory {'returned to the system' if args.release_host_memory else 'retained (as the trainer)'}")
    print(f"# baseline process (imports only): {baseline['rss'] / MIB:.0f} MiB RSS, subtracted below")
    print("# per sample = (peak at B2 - peak at B1) / (B2 - B1); fixed = peak at B1 - B1 x per sample "
          "(weights, gradients, AdamW moments, allocator slack)")
    cuda = args.device.startswith("cuda")
    head = (f"{'preset':<6} {'params':>7} {'prec':<4} {'ckpt':<4} {f'RSS@{b1}':>8} {f'RSS@{b2}':>8} "
            f"{'per-sample':>10} {'fixed':>7} {'s/step':>6}")
    if cuda:
        head += f" {f'CUDA@{b1}':>9} {f'CUDA@{b2}':>9} {'CUDA/sample':>11} {'CUDA fixed':>10}"
    print("# memory in MiB; params in millions")
    print(head)
    for preset in presets:
        for precision in args.precisions:
            for ckpt in args.checkpointing:
                results = []
                for batch in (b1, b2):
                    job = {"preset": preset, "precision": precision, "checkpointing": ckpt == "on",
                           "batch": batch, "img": args.img, "patch": args.patch, "steps": args.steps,
                           "device": args.device, "threads": args.threads,
                           "retain_host_memory": not args.release_host_memory}
                    results.append(run_fresh(job, args.timeout))
                failed = next((r["error"] for r in results if "error" in r), None)
                if failed:
                    print(f"{preset:<6} {'':>7} {precision:<4} {ckpt:<4} failed: {failed}", flush=True)
                    continue
                rss = [(r["rss"] - baseline["rss"]) / MIB for r in results]
                per_sample = (rss[1] - rss[0]) / (b2 - b1)
                line = (f"{preset:<6} {results[0]['params'] / 1e6:>7.1f} {precision:<4} {ckpt:<4} {rss[0]:>8.0f} "
                        f"{rss[1]:>8.0f} {per_sample:>10.1f} {rss[0] - b1 * per_sample:>7.0f} "
                        f"{results[1]['seconds_per_step']:>6.2f}")
                if cuda:
                    mem = [r["cuda"] / MIB for r in results]
                    slope = (mem[1] - mem[0]) / (b2 - b1)
                    line += f" {mem[0]:>9.0f} {mem[1]:>9.0f} {slope:>11.1f} {mem[0] - b1 * slope:>10.0f}"
                print(line, flush=True)
    return 0


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
