"""Pretraining-step benchmark: GridMAE against a plain MAE built like the original.

One step = forward + backward + AdamW update on a batch of synthetic 224 px images. The reference is
``mae_domains.models.MaskedAutoencoder`` (timm blocks, whole-image patch conv, decoder over all tokens,
as facebookresearch/mae). Each case runs reference and candidate in interleaved timed runs (A B A B
...), reports the median and spread (min-max) of images/s for each and of the per-pair speed ratio,
the same ratio in images per CPU-second of this process (robust to other
processes sharing the machine), model FLOPs per step from ``torch.utils.flop_counter.FlopCounterMode`` (with the CPU SDPA kernels
counted), MFU against an fp32 GEMM measured before every A/B pair (other processes
on a shared machine move the peak), and the held-out reconstruction loss of
both models after the same short training on the same data and masks.

    python benchmarks/bench_pretrain_step.py                          # the three issue cases
    python benchmarks/bench_pretrain_step.py --cases small:self --repeats 3 --train-steps 0   # quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from torch.utils import flop_counter

from mae_domains.models import MAEConfig, MaskedAutoencoder
from mae_domains.models.embeddings import PatchEmbed2D
from mae_domains.models.grid_mae import GridMAE, build_grid_mae
from mae_domains.models.presets import get_preset

aten = torch.ops.aten
REFERENCE_LOSS: dict[str, float] = {}  # held-out loss of the reference per preset, computed once


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


@dataclass
class Case:
    preset: str
    decoder: str  # "self" or "cross"

    @property
    def name(self) -> str:
        return f"ViT-{self.preset[0].upper()} {'cross-attention decoder' if self.decoder == 'cross' else 'default decoder'}"


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


def build_pair(case: Case, args: argparse.Namespace) -> tuple[MaskedAutoencoder, GridMAE]:
    dec = dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16)
    torch.manual_seed(0)
    reference = MaskedAutoencoder(MAEConfig(preset=case.preset, img_size=args.img, patch_size=16,
                                            mask_ratio=args.mask_ratio, norm_pix_loss=True, **dec))
    torch.manual_seed(0)
    query = args.query if case.decoder == "cross" else "masked"
    width = get_preset(case.preset).embed_dim
    candidate = build_grid_mae(PatchEmbed2D(3, width, 16), preset=case.preset, decoder=case.decoder, query=query,
                               mask_ratio=args.mask_ratio, norm_pix_loss=True, **dec)
    return reference, candidate


def make_optimizer(model: torch.nn.Module, batch: int) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=1.5e-4 * batch / 256, betas=(0.9, 0.95), foreach=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, images: torch.Tensor, seeds: list[int]) -> None:
    opt.zero_grad(set_to_none=True)
    loss = model(images, mask_seeds=seeds).loss
    loss.backward()
    opt.step()


def step_flops(model: torch.nn.Module, images: torch.Tensor, seeds: list[int]) -> int:
    """FLOPs of one forward + backward (the AdamW update is elementwise and not counted)."""
    with flop_counter.FlopCounterMode(display=False) as counter:
        model(images, mask_seeds=seeds).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def gemm_flops_per_second(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Median fp32 matmul throughput on this machine, the MFU denominator."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


@torch.no_grad()
def held_out_loss(model: torch.nn.Module, images: torch.Tensor, seeds: list[int], chunk: int) -> float:
    """Mean reconstruction loss over all masked tokens (a cross decoder is asked for every masked
    token here), with fixed per-sample masks so both models are scored on the same tokens."""
    model.eval()
    saved = getattr(model, "query", None)
    if saved is not None:
        model.query = "masked"
    losses = [float(model(images[i:i + chunk], mask_seeds=seeds[i:i + chunk]).loss) for i in range(0, len(images), chunk)]
    if saved is not None:
        model.query = saved
    model.train()
    return sum(losses) / len(losses)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} [{min(values):.2f}-{max(values):.2f}]"


def run_case(case: Case, args: argparse.Namespace) -> dict:
    reference, candidate = build_pair(case, args)
    models = {"reference": reference.to(args.device), "candidate": candidate.to(args.device)}
    opts = {k: make_optimizer(m, args.batch) for k, m in models.items()}
    images = synthetic_images(args.batch, args.img, seed=1).to(args.device)
    seeds = list(range(args.batch))
    flops = {k: step_flops(m, images, seeds) for k, m in models.items()}
    for k, m in models.items():  # warm-up (allocator, oneDNN kernels)
        for _ in range(args.warmup):
            train_step(m, opts[k], images, seeds)
    throughput: dict[str, list[float]] = {k: [] for k in models}
    cpu_throughput: dict[str, list[float]] = {k: [] for k in models}
    ratios, cpu_ratios, mfu = [], [], {k: [] for k in models}
    gemms = []
    for r in range(args.repeats):
        order = ("reference", "candidate") if r % 2 == 0 else ("candidate", "reference")
        gemms.append(gemm_flops_per_second(args.device, repeats=3))  # the machine's peak right now
        for k in order:
            synchronize(args.device)
            start, start_cpu = time.perf_counter(), time.process_time()
            for s in range(args.steps_per_run):
                train_step(models[k], opts[k], images, [x + 1000 * (r * args.steps_per_run + s) for x in seeds])
            synchronize(args.device)
            throughput[k].append(args.batch * args.steps_per_run / (time.perf_counter() - start))
            cpu_throughput[k].append(args.batch * args.steps_per_run / (time.process_time() - start_cpu))
            mfu[k].append(throughput[k][-1] / args.batch * flops[k] / gemms[-1])
        ratios.append(throughput["candidate"][-1] / throughput["reference"][-1])
        cpu_ratios.append(cpu_throughput["candidate"][-1] / cpu_throughput["reference"][-1])
    result = dict(case=case, flops=flops, throughput=throughput, ratios=ratios, cpu_ratios=cpu_ratios, mfu=mfu,
                  gemm=gemms)
    if args.train_steps > 0:
        result["held_out"] = quality(case, args)
    return result


def quality(case: Case, args: argparse.Namespace) -> dict[str, float]:
    """Train fresh copies of both models on the same data and masks, then score held-out images."""
    reference, candidate = build_pair(case, args)
    train = synthetic_images(args.batch * 4, args.img, seed=100).to(args.device)
    held = synthetic_images(args.held_out, args.img, seed=999).to(args.device)
    held_seeds = [10**6 + i for i in range(args.held_out)]
    out = {}
    for name, model in (("reference", reference.to(args.device)), ("candidate", candidate.to(args.device))):
        if name == "reference" and case.preset in REFERENCE_LOSS:  # same model, data and masks as before
            out[name] = REFERENCE_LOSS[case.preset]
            continue
        opt = make_optimizer(model, args.batch)
        for g in opt.param_groups:
            g["lr"] = args.train_lr
        for step in range(args.train_steps):
            start = (step * args.batch) % len(train)
            train_step(model, opt, train[start:start + args.batch], [step * args.batch + i for i in range(args.batch)])
        out[name] = held_out_loss(model, held, held_seeds, args.batch)
        if name == "reference":
            REFERENCE_LOSS[case.preset] = out[name]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="small:self,small:cross,base:cross",
                        help="comma list of preset:decoder (decoder = self | cross)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--img", type=int, default=224)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--query", type=float, default=0.25, help="fraction of all tokens the cross decoder decodes")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model (interleaved)")
    parser.add_argument("--steps-per-run", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=6, help="training steps before the held-out loss (0: skip)")
    parser.add_argument("--train-lr", type=float, default=5e-4)
    parser.add_argument("--held-out", type=int, default=16, help="held-out images")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (timings synchronize on CUDA)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = torch.device(args.device)
    register_cpu_sdpa_flops()
    cases = [Case(*c.split(":")) for c in args.cases.split(",")]
    gemm = gemm_flops_per_second(args.device)  # shown in the header; MFU uses the per-pair GEMM
    print(f"torch {torch.__version__} on {args.device}, {torch.get_num_threads()} threads, batch {args.batch}, {args.img} px, "
          f"mask {args.mask_ratio}, {args.repeats} interleaved runs x {args.steps_per_run} step(s); "
          f"fp32 GEMM {gemm / 1e9:.1f} GFLOP/s")
    rows = []
    for case in cases:
        res = run_case(case, args)
        tp, fl = res["throughput"], res["flops"]
        mfu = {k: statistics.median(v) for k, v in res["mfu"].items()}
        line = (f"{case.name:34s} ref {spread(tp['reference'])} img/s, ours {spread(tp['candidate'])} img/s, "
                f"speed-up {spread(res['ratios'])}x | GFLOP/step ref {fl['reference'] / 1e9:.0f} ours "
                f"{fl['candidate'] / 1e9:.0f} (bound {fl['reference'] / fl['candidate']:.2f}x) | MFU ref "
                f"{100 * mfu['reference']:.0f}% ours {100 * mfu['candidate']:.0f}% (GEMM "
                f"{spread([g / 1e9 for g in res['gemm']])} GFLOP/s)")
        line += f" | per CPU-second speed-up {spread(res['cpu_ratios'])}x"
        if "held_out" in res:
            h = res["held_out"]
            line += f" | held-out loss ref {h['reference']:.4f} ours {h['candidate']:.4f} ({args.train_steps} steps)"
        print(line, flush=True)
        rows.append(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
