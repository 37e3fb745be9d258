"""Cost of FG-MAE feature targets: pretraining step time of ``remote_sensing.multispectral`` with each
``data.options.target`` (pixels, hog, indices, hog+indices), and the target computation alone.

    python benchmarks/bench_feature_targets.py [--preset small] [--img-size 96] [--batch 16] [--steps 5]

Same bands (SatMAE's 10 Sentinel-2 bands in three groups), preset, chip, patch and batch for every
target; synthetic chips. Prints a Markdown table of milliseconds per step and per target call, and the
ratio to the pixel target.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mae_domains.config import load_config
from mae_domains.registry import get_adapter

TARGETS = ("pixels", "hog", "indices", "hog+indices")


def build(target: str, preset: str, img_size: int):
    adapter = get_adapter("remote_sensing.multispectral", {"target": target})
    config = load_config(None, ["adapter=remote_sensing.multispectral", f"model.preset={preset}",
                                f"model.img_size={img_size}", "model.patch_size=16"],
                         base={"data": {"options": {"target": target}}})
    adapter.bind(config)
    torch.manual_seed(0)
    return adapter, adapter.build_model(config.model, config.mask)


def batch_of(adapter, count: int) -> dict:
    samples = [adapter.transform(adapter.synthetic_sample(s), s, True, None) for s in range(count)]
    return {"image": torch.from_numpy(np.stack([s.image for s in samples])),
            "valid": torch.from_numpy(np.stack([s.valid for s in samples])),
            "mask_seed": torch.arange(count), "meta": [s.meta for s in samples]}


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--img-size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cpu")
    rows = []
    for target in TARGETS:
        adapter, model = build(target, args.preset, args.img_size)
        batch = batch_of(adapter, args.batch)
        inputs = adapter.model_inputs(batch, device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            out = model(**inputs)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()

        grid = inputs["images"]
        layout = model.embedding.layout(grid)
        with torch.no_grad():
            target_ms = timed(lambda: model.target(grid, model.embedding, layout), args.steps)
            width = model.target(grid, model.embedding, layout)[0].shape[-1]
        rows.append((target, timed(step, args.steps), target_ms, width))
    base = rows[0][1]
    print(f"| target | step ms | target ms | values per token | step / pixels |  "
          f"(preset {args.preset}, {args.img_size} px, batch {args.batch}, CPU)")
    print("|---|---|---|---|---|")
    for target, step_ms, target_ms, width in rows:
        print(f"| {target} | {step_ms:.1f} | {target_ms:.2f} | {width} | {step_ms / base:.2f} |")


if __name__ == "__main__":
    main()
