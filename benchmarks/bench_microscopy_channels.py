"""Channel-agnostic microscopy MAE: pretraining-step time and peak memory versus channel count.

Every case (1, 3, 4, 5, 8 channels by default, 256 px crops, 16 px patches: C x 256 tokens) runs in a fresh
Python process, so peak memory is that case's alone. One step = forward + backward + AdamW update of the
adapter's model (shared patch embedding, channel codes by name, one shared decoder, Fourier term) on a batch
of synthetic Cell Painting crops. Reported per case: tokens, median step time (and images/s), and memory:

- ``peak``: the process's peak resident set size (CPU) or peak allocated CUDA memory;
- ``step``: what the steps add to the memory held after building the model and batch (peak minus that
  baseline): activations, gradients and optimizer state. Weights, gradients and optimizer state do not
  depend on the channel count (one shared embedding and decoder), activations grow with the tokens.

The issue's target is checked on the step memory: 8 channels at most 2.2x the memory of 4.

    python benchmarks/bench_microscopy_channels.py                          # ViT-S, batch 8
    python benchmarks/bench_microscopy_channels.py --preset micro --batch 4 --steps 3   # quick CPU check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

NAMES = ["DNA", "RNA", "ER", "AGP", "Mito", "Brightfield", "Actin", "Tubulin"]
TARGET_RATIO = 2.2


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_case(args: argparse.Namespace) -> dict:
    """One case in this process: build, warm up, time ``steps`` steps, measure memory."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import numpy as np
    import torch

    from mae_domains.config import load_config
    from mae_microscopy.adapter import ChannelAgnosticAdapter  # directly: no other plugin is imported
    from mae_microscopy.synthetic import synthetic_field

    torch.set_num_threads(args.threads or torch.get_num_threads())
    device = torch.device(args.device)
    names = NAMES[:args.channels] if args.channels <= len(NAMES) else [f"stain{i}" for i in range(args.channels)]
    options = {"fourier_weight": args.fourier, "channel_vocabulary": NAMES[:5]}
    overrides = [f"model.preset={args.preset}", f"model.img_size={args.size}", f"model.patch_size={args.patch}",
                 "model.norm_pix_loss=false"]
    if args.decoder_depth:
        overrides.append(f"model.decoder_depth={args.decoder_depth}")
    config = load_config(None, ["adapter=microscopy.channel_agnostic"] + overrides, base={"data": {"options": options}})
    adapter = ChannelAgnosticAdapter(options).bind(config)
    torch.manual_seed(0)
    model = adapter.build_model(config.model, config.mask).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    crops = [synthetic_field(i, names, args.size, args.size, cells=12).astype(np.float32) for i in range(args.batch)]
    images = torch.from_numpy(np.stack([(c - c.mean((1, 2), keepdims=True)) / c.std((1, 2), keepdims=True) for c in crops]))
    batch = {"image": images, "valid": torch.ones(args.batch, args.size, args.size, dtype=torch.bool),
             "meta": [{"channel_names": names}] * args.batch, "mask_seed": list(range(args.batch))}
    inputs = adapter.model_inputs(batch, device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()

    # memory before the first step: libraries, weights, the batch; the steps add activations, gradients
    # and optimizer state on top of it
    base = torch.cuda.memory_allocated() if device.type == "cuda" else rss_bytes()
    step()  # warm-up: allocates gradients and optimizer state
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    out = {"channels": args.channels, "tokens": args.channels * (args.size // args.patch) ** 2,
           "step_s": statistics.median(times), "step_min_s": min(times), "step_max_s": max(times),
           "images_per_s": args.batch / statistics.median(times), "peak_mib": peak / 2**20,
           "base_mib": base / 2**20, "step_mib": (peak - base) / 2**20, "threads": torch.get_num_threads(),
           "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 3, 4, 5, 8])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--decoder-depth", type=int, default=None)
    parser.add_argument("--fourier", type=float, default=0.01)
    parser.add_argument("--device", default="cuda" if os.environ.get("CUDA_VISIBLE_DEVICES") not in (None, "") else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.channels = args.channels[0]
        print(json.dumps(run_case(args)))
        return 0
    rows = []
    for channels in args.channels:
        cmd = [sys.executable, __file__, "--worker", "--channels", str(channels)] + [
            a for k, v in (("--preset", args.preset), ("--size", args.size), ("--patch", args.patch),
                           ("--batch", args.batch), ("--steps", args.steps), ("--fourier", args.fourier),
                           ("--device", args.device), ("--threads", args.threads)) for a in (k, str(v))]
        if args.decoder_depth:
            cmd += ["--decoder-depth", str(args.decoder_depth)]
        if args.bf16:
            cmd.append("--bf16")
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {channels} channel(s) done: {rows[-1]['step_s']:.3f} s/step", file=sys.stderr)
    print(f"channel-agnostic MAE, preset {args.preset}, {args.size} px, patch {args.patch}, batch {args.batch}, "
          f"{args.steps} timed steps, device {args.device}, fresh process per case")
    by = {r["channels"]: r for r in rows}
    reference = by.get(4)
    print("| channels | tokens | step s (min-max) | images/s | peak MiB | step MiB | step MiB / 4 ch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['step_mib'] / reference['step_mib']:.2f}x" if reference else "-"
        peak = r["peak_mib"]
        print(f"| {r['channels']} | {r['tokens']} | {r['step_s']:.3f} ({r['step_min_s']:.3f}-{r['step_max_s']:.3f}) | "
              f"{r['images_per_s']:.2f} | {peak:.0f} | {r['step_mib']:.0f} | {ratio} |")
    if reference and 8 in by:
        ratio = by[8]["step_mib"] / reference["step_mib"]
        verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
        print(f"8 channels use {ratio:.2f}x the step memory of 4: {verdict} the target of at most {TARGET_RATIO}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
