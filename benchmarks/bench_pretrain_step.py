"""Pretraining-step benchmark: GridMAE against the plain MAE, in fp32 and in bf16 autocast, with MFU.

One step = forward + backward + AdamW update on a batch of synthetic images. Printed in one run:

- the fp32 and bf16 GEMM rates of this machine (best of five 2048^2 matmuls, measured again before every
  round);
- for each preset (ViT-S, ViT-B) and precision: the plain MAE (``mae_domains.testing.reference_mae.MaskedAutoencoder``,
  the golden reference: timm blocks, decoder over all tokens, plain ``torch.optim.AdamW`` and plain
  autocast, as the original code) and our step with the cross-attention and the self-attention decoder
  (engine optimizer: fused AdamW; CPU bf16: matmul attention; freed host memory kept for reuse, as the
  trainer sets up). Images/s (median and min-max over interleaved rounds), our speed over the plain MAE's,
  our bf16 speed over our fp32 speed, FLOPs per step (``FlopCounterMode``) and MFU against the same
  round's GEMM rate of the precision in use (the rates of the rounds are printed too);
- ViT-B's plain MAE and cross-decoder rows again at ``--mfu-batch`` (64, the original recipe's batch per
  GPU), where fixed per-step costs (AdamW update, autocast's weight casts) weigh half as much;
- the held-out reconstruction loss of our models after the same short training in fp32 and in bf16
  (scored in fp32 on the same held-out images and masks), and the bf16-fp32 difference;
- with ``--profile``: the top operators by self CPU time of one ViT-B step in each precision.

Rounds interleave the models (A B C, then C B A, ...), so on a machine shared with other processes each
ratio compares runs under the same load; medians are reported.

    python benchmarks/bench_pretrain_step.py                                          # the full table
    python benchmarks/bench_pretrain_step.py --presets base --decoders cross --precisions bf16 --repeats 2 \\
        --train-steps 0                                                              # quick
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
from torch.utils import flop_counter

from mae_domains.device import cpu_native_bf16
from mae_domains.host_memory import retain_freed_host_memory
from mae_domains.optim import build_optimizer
from mae_domains.testing.reference_mae import MAEConfig, MaskedAutoencoder
from mae_domains.models.attention import prefer_matmul_attention
from mae_domains.models.embeddings import PatchEmbed2D
from mae_domains.models.grid_mae import build_grid_mae
from mae_domains.models.presets import get_preset

aten = torch.ops.aten
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def register_cpu_sdpa_flops() -> None:
    """FlopCounterMode knows the CUDA attention kernels; count the CPU flash kernel the same way."""
    registry = flop_counter.flop_registry
    fwd = aten._scaled_dot_product_flash_attention_for_cpu.default
    bwd = aten._scaled_dot_product_flash_attention_for_cpu_backward.default
    if fwd not in registry:
        registry[fwd] = lambda q, k, v, *a, out_shape=None, **kw: flop_counter.sdpa_flop_count(q.shape, k.shape, v.shape)
    if bwd not in registry:
        registry[bwd] = lambda grad_out, q, k, v, *a, out_shape=None, **kw: flop_counter.sdpa_backward_flop_count(
            grad_out.shape, q.shape, k.shape, v.shape)


def synthetic_images(count: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random fields with edges (sums of oriented sinusoids and discs), standardized per image."""
    gen = torch.Generator().manual_seed(seed)
    coords = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    images = torch.zeros(count, 3, size, size)
    for _ in range(4):
        freq = torch.rand(count, 3, 2, generator=gen) * 12
        phase = torch.rand(count, 3, 1, 1, generator=gen) * 6.28
        images += torch.sin(freq[..., 0, None, None] * xx + freq[..., 1, None, None] * yy + phase)
    for _ in range(3):
        centre = torch.rand(count, 2, generator=gen)
        radius = 0.05 + 0.2 * torch.rand(count, generator=gen)
        level = torch.randn(count, 3, generator=gen)
        disc = ((yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2) < radius[:, None, None] ** 2
        images += disc.unsqueeze(1) * level[..., None, None]
    images -= images.mean(dim=(2, 3), keepdim=True)
    return images / images.std(dim=(2, 3), keepdim=True)


def autocast_for(device: torch.device, precision: str):
    dtype = DTYPES[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Contender:
    """A model, its optimizer and its timings."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    flops: int = 0
    images_per_s: list[float] = field(default_factory=list)
    mfu: list[float] = field(default_factory=list)


def build_reference(preset: str, args: argparse.Namespace) -> MaskedAutoencoder:
    torch.manual_seed(0)
    return MaskedAutoencoder(MAEConfig(preset=preset, img_size=args.img, patch_size=16, mask_ratio=args.mask_ratio,
                                       norm_pix_loss=True, decoder_embed_dim=512, decoder_depth=8,
                                       decoder_num_heads=16))


def build_ours(preset: str, decoder: str, precision: str, args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(0)
    query = args.query if decoder == "cross" else "masked"
    model = build_grid_mae(PatchEmbed2D(3, get_preset(preset).embed_dim, 16), preset=preset, decoder=decoder,
                           query=query, mask_ratio=args.mask_ratio, norm_pix_loss=True, decoder_embed_dim=512,
                           decoder_depth=8, decoder_num_heads=16)
    if args.device.type == "cpu" and precision != "fp32":
        prefer_matmul_attention(model)  # as the trainer does for CPU mixed precision
    return model.to(args.device)


def reference_optimizer(model: torch.nn.Module, batch: int) -> torch.optim.Optimizer:
    """The original code's AdamW (torch defaults: no fused kernel)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=1.5e-4 * batch / 256, betas=(0.9, 0.95))


def train_step(model, optimizer, images, seeds, device, precision) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    with autocast_for(device, precision):
        loss = model(images, mask_seeds=seeds).loss
    loss.backward()
    optimizer.step()
    return loss


def step_flops(model: torch.nn.Module, images: torch.Tensor, seeds: list[int]) -> int:
    """FLOPs of one forward + backward in fp32 (the AdamW update is elementwise and not counted)."""
    with flop_counter.FlopCounterMode(display=False) as counter:
        model(images, mask_seeds=seeds).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def gemm_rate(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Best matmul throughput (FLOP/s) of ``dtype`` over ``repeats`` timed products after two warm-up
    ones: the MFU denominator. The best, not the median, because a shared machine only ever makes a
    product slower; a denominator that dips with the load would inflate the MFU."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times)


def gemm_rates(device: torch.device) -> dict[str, float]:
    return {"fp32": gemm_rate(device, torch.float32), "bf16": gemm_rate(device, torch.bfloat16)}


def spread(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def time_precision(preset: str, precision: str, args: argparse.Namespace) -> tuple[dict[str, Contender], list[float]]:
    """Interleaved timed rounds of the plain MAE and our decoders at one preset and precision; also the
    GEMM rate of ``precision`` measured before each round (the MFU denominators)."""
    device = args.device
    images = synthetic_images(args.batch, args.img, seed=1).to(device)
    seeds = list(range(args.batch))
    contenders = {}
    reference = build_reference(preset, args).to(device)
    contenders["plain MAE"] = Contender("plain MAE", reference, reference_optimizer(reference, args.batch))
    for decoder in args.decoders:
        model = build_ours(preset, decoder, precision, args)
        optimizer = build_optimizer(model, 1.5e-4 * args.batch / 256, 0.05, (0.9, 0.95))
        contenders[decoder] = Contender(decoder, model, optimizer)
    for c in contenders.values():
        c.flops = step_flops(c.model, images, seeds)
        for w in range(args.warmup):
            train_step(c.model, c.optimizer, images, [s + 10**5 * (w + 1) for s in seeds], device, precision)
    names = list(contenders)
    rates = []
    for r in range(args.repeats):
        rate = gemm_rate(device, DTYPES[precision] or torch.float32)
        rates.append(rate)
        for name in (names if r % 2 == 0 else names[::-1]):
            c = contenders[name]
            synchronize(device)
            start = time.perf_counter()
            for s in range(args.steps_per_run):
                train_step(c.model, c.optimizer, images, [x + 1000 * (r * args.steps_per_run + s) for x in seeds],
                           device, precision)
            synchronize(device)
            c.images_per_s.append(args.batch * args.steps_per_run / (time.perf_counter() - start))
            c.mfu.append(c.images_per_s[-1] / args.batch * c.flops / rate)
    return contenders, rates


@torch.no_grad()
def held_out_loss(model: torch.nn.Module, images: torch.Tensor, seeds: list[int], chunk: int) -> float:
    """fp32 mean loss over all masked tokens of fixed held-out images and masks."""
    model.eval()
    saved = model.query
    model.query = "masked"
    losses = [float(model(images[i:i + chunk], mask_seeds=seeds[i:i + chunk]).loss) for i in range(0, len(images), chunk)]
    model.query = saved
    model.train()
    return sum(losses) / len(losses)


def trained_loss(preset: str, decoder: str, precision: str, args: argparse.Namespace) -> tuple[float, float]:
    """Held-out loss before and after ``--train-steps`` steps on the same data and masks in ``precision``."""
    device = args.device
    model = build_ours(preset, decoder, precision, args)
    optimizer = build_optimizer(model, args.train_lr, 0.05, (0.9, 0.95))
    train = synthetic_images(args.train_batch * 4, args.img, seed=100).to(device)
    held = synthetic_images(args.held_out, args.img, seed=999).to(device)
    held_seeds = [10**6 + i for i in range(args.held_out)]

    def score() -> float:
        prefer_matmul_attention(model, enabled=False)
        loss = held_out_loss(model, held, held_seeds, args.train_batch)
        if args.device.type == "cpu" and precision != "fp32":
            prefer_matmul_attention(model)
        return loss

    before = score()
    for step in range(args.train_steps):
        start = (step * args.train_batch) % len(train)
        train_step(model, optimizer, train[start:start + args.train_batch],
                   [step * args.train_batch + i for i in range(args.train_batch)], device, precision)
    return before, score()


def profile_step(preset: str, decoder: str, precision: str, args: argparse.Namespace, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    device = args.device
    model = build_ours(preset, decoder, precision, args)
    optimizer = build_optimizer(model, 1e-5, 0.05, (0.9, 0.95))
    images = synthetic_images(args.batch, args.img, seed=1).to(device)
    seeds = list(range(args.batch))
    for _ in range(2):  # steady state: the first steps also fault in the memory that later steps reuse
        train_step(model, optimizer, images, seeds, device, precision)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(model, optimizer, images, seeds, device, precision)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def print_rows(preset: str, precision: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Time one preset and precision; print the plain MAE's row and ours; return our images/s per decoder."""
    timed, rates = time_precision(preset, precision, args)
    plain = timed["plain MAE"]
    print(f"ViT-{preset[0].upper()} {precision}, batch {args.batch} (GEMM {spread([r / 1e12 for r in rates], 3)} "
          f"TFLOP/s over the rounds): plain MAE {spread(plain.images_per_s)} img/s, {plain.flops / 1e9:.0f} "
          f"GFLOP/step, MFU {spread([100 * m for m in plain.mfu], 0)}%", flush=True)
    for decoder in args.decoders:
        c = timed[decoder]
        ratio = [a / b for a, b in zip(c.images_per_s, plain.images_per_s)]
        print(f"  ours, {decoder:5s} decoder: {spread(c.images_per_s)} img/s, x{spread(ratio)} the plain MAE, "
              f"{c.flops / 1e9:.0f} GFLOP/step, MFU {spread([100 * m for m in c.mfu], 0)}% of {precision} GEMM",
              flush=True)
    return {decoder: timed[decoder].images_per_s for decoder in args.decoders}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="small,base", help="comma list of encoder presets")
    parser.add_argument("--decoders", default="cross,self", help="comma list: cross, self")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma list: fp32, bf16")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--img", type=int, default=224)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--query", type=float, default=0.25, help="fraction of all tokens the cross decoder decodes")
    parser.add_argument("--mfu-batch", type=int, default=64,
                        help="also time ViT-B (plain MAE and cross decoder) at this batch (0: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per model (interleaved)")
    parser.add_argument("--steps-per-run", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=30, help="training steps before the held-out loss (0: skip)")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-lr", type=float, default=5e-4)
    parser.add_argument("--held-out", type=int, default=16, help="held-out images")
    parser.add_argument("--profile", action="store_true", help="print the top ops of one ViT-B cross step per precision")
    parser.add_argument("--profile-rows", type=int, default=15)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (timings synchronize on CUDA)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--release-host-memory", action="store_true",
                        help="malloc returns freed memory to the system (engine.retain_host_memory=false)")
    args = parser.parse_args(argv)
    retained = False if args.release_host_memory else retain_freed_host_memory()  # as the trainer does
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = torch.device(args.device)
    args.decoders = args.decoders.split(",")
    register_cpu_sdpa_flops()
    gemm = gemm_rates(args.device)
    native = cpu_native_bf16()[1] if args.device.type == "cpu" else torch.cuda.get_device_name(args.device)
    print(f"torch {torch.__version__} on {args.device} ({native}), {torch.get_num_threads()} threads; batch "
          f"{args.batch}, {args.img} px, mask {args.mask_ratio}, cross query {args.query}; {args.repeats} "
          f"interleaved rounds x {args.steps_per_run} step(s); freed host memory "
          f"{'retained' if retained else 'returned to the system'}")
    print(f"GEMM 2048^2: fp32 {gemm['fp32'] / 1e12:.3f} TFLOP/s, bf16 {gemm['bf16'] / 1e12:.3f} TFLOP/s "
          f"({gemm['bf16'] / gemm['fp32']:.1f}x)", flush=True)
    ours_speed: dict[tuple[str, str, str], list[float]] = {}
    for preset in args.presets.split(","):
        for precision in args.precisions.split(","):
            for decoder, speed in print_rows(preset, precision, args).items():
                ours_speed[(preset, decoder, precision)] = speed
    if "fp32" in args.precisions and "bf16" in args.precisions:
        print("bf16 over fp32 (our step, medians of the interleaved rounds; separate rounds, so contention shows):")
        for preset in args.presets.split(","):
            for decoder in args.decoders:
                fp32, bf16 = ours_speed[(preset, decoder, "fp32")], ours_speed[(preset, decoder, "bf16")]
                print(f"  ViT-{preset[0].upper()} {decoder}: x{statistics.median(bf16) / statistics.median(fp32):.2f}")
    if args.mfu_batch and "base" in args.presets.split(","):
        wide = argparse.Namespace(**{**vars(args), "batch": args.mfu_batch, "decoders": ["cross"]})
        print(f"ViT-B again at batch {args.mfu_batch} (64 is the original MAE recipe's batch per GPU; fixed per-step "
              f"costs such as the AdamW update and autocast's weight casts weigh less at larger batches):")
        for precision in args.precisions.split(","):
            print_rows("base", precision, wide)
    if args.train_steps > 0:
        print(f"held-out loss after {args.train_steps} steps (batch {args.train_batch}, lr {args.train_lr}), scored in fp32:")
        for preset in args.presets.split(","):
            for decoder in args.decoders:
                runs = {p: trained_loss(preset, decoder, p, args) for p in args.precisions.split(",")}
                losses = {p: after for p, (_, after) in runs.items()}
                text = ", ".join(f"{p} {before:.4f} -> {after:.4f}" for p, (before, after) in runs.items())
                if "fp32" in losses and "bf16" in losses:
                    text += f" (bf16 {100 * (losses['bf16'] / losses['fp32'] - 1):+.2f}%)"
                print(f"  ViT-{preset[0].upper()} {decoder}: {text}", flush=True)
    if args.profile:
        for precision in args.precisions.split(","):
            print(f"\ntop ops by self CPU time, ViT-B cross decoder, {precision}, batch {args.batch}:")
            print(profile_step("base", "cross", precision, args, args.profile_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
