"""The checks every adapter, built-in or third-party, must pass (the plugin guide, docs/plugins.md).

Each check builds what it needs from the adapter's synthetic sample and a tiny model, on the CPU. A failed
check raises :class:`ConformanceError` (never a bare ``assert``, which ``python -O`` would strip).
"""

from __future__ import annotations

import copy
import re
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mae_domains.adapter_api import Adapter
from mae_domains.config import RunConfig, load_config
from mae_domains.data.dataset import collate_items
from mae_domains.data.sample import NormStats, Sample
from mae_domains.data.seeding import STREAM_MASK, derive_seed

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$")
TINY_OVERRIDES = ["model.preset=micro", "model.img_size=32", "model.patch_size=8", "model.decoder_embed_dim=32",
                  "model.decoder_depth=1", "model.decoder_num_heads=4", "engine.batch_size=2"]


class ConformanceError(AssertionError):
    """A conformance check failed; the message says which and why (an AssertionError, so pytest shows it)."""


def require(condition: Any, message: str) -> None:
    """Raise :class:`ConformanceError` with ``message`` unless ``condition`` holds (kept under ``python -O``)."""
    if not condition:
        raise ConformanceError(message)


def tiny_config(adapter: Adapter) -> RunConfig:
    """A CPU-sized configuration: micro preset, 32 px, 8 px patches; adapters may add ``test_overrides``."""
    extra = list(getattr(adapter, "test_overrides", ()))
    return load_config(None, [f"adapter={adapter.name}"] + TINY_OVERRIDES + extra,
                       base={"mask": {"ratio": adapter.default_mask_ratio}, "data": {"options": dict(adapter.options)}})


class SyntheticDataset(Dataset):
    """Item ``i``: the adapter's synthetic sample 0 transformed with seed ``i`` (train augmentation)."""

    def __init__(self, adapter: Adapter, stats: NormStats | None, length: int = 4) -> None:
        self.adapter = adapter
        self.stats = stats
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.adapter.transform(self.adapter.synthetic_sample(0), derive_seed(0, i), True, self.stats)
        item = {"image": torch.from_numpy(np.ascontiguousarray(sample.image, np.float32)), "index": i,
                "mask_seed": derive_seed(0, 0, i, STREAM_MASK), "sample_id": f"synthetic-{i}", "meta": sample.meta,
                "skipped": []}
        if sample.valid is not None:
            item["valid"] = torch.from_numpy(np.ascontiguousarray(sample.valid, bool))
        return item


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class ConformanceReport:
    adapter: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def render(self) -> str:
        lines = [f"conformance of adapter {self.adapter!r}:"]
        for r in self.results:
            lines.append(f"  {'PASS' if r.passed else 'FAIL'}  {r.name}" + (f": {r.detail}" if r.detail else ""))
        lines.append(f"{sum(r.passed for r in self.results)} passed, {sum(not r.passed for r in self.results)} failed")
        return "\n".join(lines)


class Context:
    """Shared, lazily built pieces: the bound adapter, statistics, a batch and the tiny model."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.config = tiny_config(adapter)
        adapter.bind(self.config)
        self._batch = None
        self._stats = None

    @property
    def stats(self) -> NormStats:
        if self._stats is None:
            samples = [self.adapter.synthetic_sample(s) for s in range(3)]
            from mae_domains.data.sample import RunningStats

            running = RunningStats(self.adapter.stats_view(samples[0]).shape[0])
            for s in samples:
                running.update(self.adapter.stats_view(s), s.valid)
            self._stats = running.result(len(samples))
        return self._stats

    def batch(self) -> dict[str, Any]:
        if self._batch is None:
            ds = SyntheticDataset(self.adapter, self.stats, 2)
            self._batch = collate_items([ds[0], ds[1]])
        return self._batch

    def model(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return self.adapter.build_model(self.config.model, self.config.mask)

    def forward(self, model: torch.nn.Module, batch: dict[str, Any] | None = None):
        return model(**self.adapter.model_inputs(batch or self.batch(), torch.device("cpu")))


# ----- the checks ---------------------------------------------------------------------------------
def check_identity(ctx: Context) -> str:
    a = ctx.adapter
    require(NAME_PATTERN.match(a.name or ""), f"name {a.name!r} must look like 'family.kind' (lowercase)")
    require(str(a.api_version).split(".")[0].isdigit(), f"api_version {a.api_version!r} is not 'MAJOR.MINOR'")
    return f"{a.name} api {a.api_version}"


def check_synthetic_sample(ctx: Context) -> str:
    s = ctx.adapter.synthetic_sample(0)
    require(isinstance(s, Sample), "synthetic_sample must return a Sample")
    require(s.image.dtype == np.float32, f"image dtype {s.image.dtype}, expected float32")
    require(s.image.ndim >= 3, f"image must be channels-first with >= 3 dims, got shape {s.image.shape}")
    require(np.isfinite(s.image).any(), "image has no finite values")
    require("source" in s.meta, "meta must name the sample's source")
    again = ctx.adapter.synthetic_sample(0)
    require(np.array_equal(np.nan_to_num(s.image), np.nan_to_num(again.image)),
            "synthetic_sample(seed) is not deterministic")
    return f"shape {tuple(s.image.shape)}"


def check_transform_determinism(ctx: Context) -> str:
    a, s = ctx.adapter, ctx.adapter.synthetic_sample(1)
    x1 = a.transform(copy.deepcopy(s), 123, True, ctx.stats).image
    x2 = a.transform(copy.deepcopy(s), 123, True, ctx.stats).image
    require(x1.dtype == np.float32, f"transformed dtype {x1.dtype}, expected float32")
    require(np.array_equal(x1, x2), "the same seed gave different augmentations")
    e1 = a.transform(copy.deepcopy(s), 1, False, ctx.stats).image
    e2 = a.transform(copy.deepcopy(s), 2, False, ctx.stats).image
    require(np.array_equal(e1, e2), "evaluation transform (train=False) depends on the seed")
    return f"model input {tuple(x1.shape)}"


def check_shapes_and_mask(ctx: Context) -> str:
    model = ctx.model().eval()
    with torch.no_grad():
        out = ctx.forward(model)
    mask = out.mask
    b = ctx.batch()["image"].shape[0]
    require(mask.shape[0] == b, f"mask batch {mask.shape[0]} != {b}")
    n = mask.shape[1]
    rows = tuple(out.query_ids.shape) if hasattr(out, "query_ids") else (b, n)  # decoded subset, or every token
    require(tuple(out.pred.shape[:2]) == rows, f"predictions {tuple(out.pred.shape)} do not match {rows} decoded tokens")
    masked = mask.sum(dim=1)
    ratio = ctx.config.mask.ratio
    expected = n - int(n * (1 - ratio))
    require(torch.all(masked >= expected), f"{masked.tolist()} tokens masked, expected at least {expected} of {n}")
    require(torch.isfinite(out.loss), "loss is not finite")
    return f"{n} tokens, {int(masked[0])} masked"


def check_seeded_masks(ctx: Context) -> str:
    model = ctx.model().eval()
    with torch.no_grad():
        m1 = ctx.forward(model).mask
        m2 = ctx.forward(model).mask
    require(torch.equal(m1, m2), "the same mask seeds gave different masks")
    require(not torch.equal(m1[0], m1[1]), "two samples with different seeds got the same mask")
    return "identical across calls"


def check_patchify_round_trip(ctx: Context) -> str:
    """Targets laid out per token go back to the exact image: the 2D MAE's ``patchify``/``unpatchify``
    or a grid embedding's ``target_patches``/``unpatchify``."""
    model = ctx.model()
    images = ctx.batch()["image"]
    embedding = getattr(model, "embedding", None)
    if embedding is not None and hasattr(embedding, "target_patches"):
        from mae_domains.grid import as_grid_batch

        layout = embedding.layout(as_grid_batch(ctx.adapter.model_inputs(ctx.batch(), torch.device("cpu"))["images"]))
        patches = embedding.target_patches(images, layout)
        back = embedding.unpatchify(patches, layout)
    elif hasattr(model, "patchify") and hasattr(model, "unpatchify"):
        patches = model.patchify(images)
        back = model.unpatchify(patches, model.encoder.grid_for(images.shape[-2], images.shape[-1]))
    else:
        raise ConformanceError("the model exposes neither patchify/unpatchify nor embedding.target_patches/unpatchify")
    require(back.shape == images.shape, f"round trip changed the shape {tuple(images.shape)} -> {tuple(back.shape)}")
    require(torch.equal(back, images), "unpatchify(patchify(x)) != x")
    return f"{patches.shape[1]} patches"


def check_training_step(ctx: Context) -> str:
    model = ctx.model().train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    out = ctx.forward(model)
    require(torch.isfinite(out.loss), f"loss {out.loss.item()} is not finite")
    out.loss.backward()
    with_grad = [(n, p) for n, p in model.named_parameters() if p.requires_grad and p.grad is not None]
    require(with_grad, "no parameter received a gradient")
    bad = [n for n, p in with_grad if not torch.isfinite(p.grad).all()]
    require(not bad, f"non-finite gradients in {bad[:3]}")
    opt.step()
    out2 = ctx.forward(model)
    require(torch.isfinite(out2.loss), "loss is not finite after one optimizer step")
    return f"loss {out.loss.item():.4f} -> {out2.loss.item():.4f}"


def check_dataloader_spawn(ctx: Context) -> str:
    """Real 2-worker DataLoader under ``spawn``: the adapter pickles, and workers augment differently."""
    ds = SyntheticDataset(ctx.adapter, ctx.stats, 4)
    loader = DataLoader(ds, batch_size=1, num_workers=2, multiprocessing_context="spawn", collate_fn=collate_items)
    images = [b["image"][0] for b in loader]
    local = [ds[i]["image"] for i in range(4)]
    require(all(torch.equal(a, b) for a, b in zip(images, local)), "worker output differs from the main process")
    require(not torch.equal(images[0], images[1]), "the two workers produced identical augmentations")
    return "2 spawned workers"


def check_safetensors_round_trip(ctx: Context) -> str:
    from mae_domains.weights import load_safetensors, save_safetensors

    model = ctx.model().eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = save_safetensors(model.state_dict(), Path(tmp) / "weights.safetensors")
        tensors, _ = load_safetensors(path)
    torch.manual_seed(123)
    other = ctx.adapter.build_model(ctx.config.model, ctx.config.mask).eval()
    other.load_state_dict(tensors)
    with torch.no_grad():
        a, b = ctx.forward(model), ctx.forward(other)
    require(torch.equal(a.loss, b.loss), "reloaded weights give a different loss")
    return f"{len(tensors)} tensors"


def check_render(ctx: Context) -> str:
    model = ctx.model().eval()
    with torch.no_grad():
        out = ctx.forward(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = ctx.adapter.render_reconstruction(model, ctx.batch(), out, Path(tmp) / "recon.png")
        require(Path(path).is_file() and Path(path).stat().st_size > 0, "no figure written")
    return "figure written"


CHECKS: dict[str, Callable[[Context], str]] = {
    "identity": check_identity,
    "synthetic sample": check_synthetic_sample,
    "seeded transform": check_transform_determinism,
    "shapes, token count and mask ratio": check_shapes_and_mask,
    "seeded masks": check_seeded_masks,
    "patchify round trip": check_patchify_round_trip,
    "finite loss and gradients after one step": check_training_step,
    "picklable for spawned DataLoader workers": check_dataloader_spawn,
    "weights round trip through safetensors": check_safetensors_round_trip,
    "visualization": check_render,
}


def check_adapter(adapter: str | type | Adapter, only: list[str] | None = None) -> ConformanceReport:
    """Run the conformance checks on an adapter (name, class or instance); never raises."""
    if isinstance(adapter, str):
        from mae_domains.registry import get_adapter

        adapter = get_adapter(adapter)
    elif isinstance(adapter, type):
        adapter = adapter()
    ctx = Context(adapter)
    report = ConformanceReport(adapter.name)
    for name, check in CHECKS.items():
        if only and name not in only:
            continue
        try:
            report.results.append(CheckResult(name, True, check(ctx)))
        except Exception as err:  # report every failing check, not just the first
            detail = f"{type(err).__name__}: {err}" if str(err) else traceback.format_exc(limit=2)
            report.results.append(CheckResult(name, False, detail))
    return report


def assert_adapter_conforms(adapter: str | type | Adapter, only: list[str] | None = None) -> ConformanceReport:
    """For pytest: raise :class:`ConformanceError` listing every failed check (of ``only``, when given)."""
    report = check_adapter(adapter, only)
    if not report.passed:
        raise ConformanceError(report.render())
    return report
