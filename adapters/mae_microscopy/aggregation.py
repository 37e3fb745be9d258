"""Embedding an archive crop by crop and aggregating the embeddings per image and per well.

A :class:`ProfileTable` is features ``(N, D)`` plus id columns (``plate``, ``well``, ``site``,
``perturbation``, ``label``, ``image``, ``sample_id``, ``source``); :func:`aggregate` averages (or takes the
median of) the rows that share the chosen ids, keeping every column that is constant within a group (a
well's perturbation) and a ``count``. Tables are written as ``.npz`` (arrays only, no pickles) plus a CSV
of the ids.

    crops = embed_archive(adapter, model, ["plate1.csv"], stats)        # one row per crop
    images = aggregate(crops, ["plate", "well", "site", "image"])        # one row per image (field plane)
    wells = aggregate(images, ["plate", "well"])                         # one row per well
    wells.write("plate1_wells.npz")
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from mae_domains.data.loaders import evaluation_loader
from mae_domains.data.sample import NormStats
from mae_domains.grid import GridBatch

ID_COLUMNS = ("plate", "well", "site", "perturbation", "label", "image", "sample_id", "source")


@dataclass
class ProfileTable:
    """Feature rows and their id columns (strings; empty where unknown)."""

    features: np.ndarray
    ids: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        self.ids = {k: np.asarray(v, dtype=str) for k, v in self.ids.items()}
        for key, values in self.ids.items():
            if len(values) != len(self.features):
                raise ValueError(f"id column {key!r} has {len(values)} values for {len(self.features)} rows")

    def __len__(self) -> int:
        return len(self.features)

    def column(self, key: str) -> np.ndarray:
        if key not in self.ids:
            raise KeyError(f"no id column {key!r}; the table has {sorted(self.ids)}")
        return self.ids[key]

    def select(self, rows: np.ndarray) -> "ProfileTable":
        return ProfileTable(self.features[rows], {k: v[rows] for k, v in self.ids.items()})

    def write(self, path: str | Path) -> Path:
        """``path`` (.npz: ``features`` and one array per id column) and ``path`` with ``.csv`` (the ids)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, features=self.features, **{f"id_{k}": v for k, v in self.ids.items()})
        with open(path.with_suffix(".csv"), "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(list(self.ids))
            writer.writerows(zip(*self.ids.values()))
        return path

    @classmethod
    def read(cls, path: str | Path) -> "ProfileTable":
        with np.load(path, allow_pickle=False) as data:
            return cls(data["features"], {k[3:]: data[k] for k in data.files if k.startswith("id_")})


def aggregate(table: ProfileTable, by: Sequence[str], how: str = "mean") -> ProfileTable:
    """One row per distinct combination of the ``by`` columns (in first-seen order): the mean or median of
    its features; id columns constant within every group are kept, plus ``count``."""
    if how not in ("mean", "median"):
        raise ValueError(f"aggregation must be 'mean' or 'median', got {how!r}")
    keys = list(zip(*(table.column(k) for k in by)))
    groups: dict[tuple, list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    reduce = np.mean if how == "mean" else np.median
    features = np.stack([reduce(table.features[rows], axis=0) for rows in groups.values()])
    ids: dict[str, Any] = {k: [key[i] for key in groups] for i, k in enumerate(by)}
    for column, values in table.ids.items():
        if column in ids:
            continue
        per_group = [values[rows] for rows in groups.values()]
        if all((v == v[0]).all() for v in per_group):
            ids[column] = [v[0] for v in per_group]
    ids["count"] = [str(len(rows)) for rows in groups.values()]
    return ProfileTable(features, ids)


def image_id(meta: Mapping[str, Any]) -> str:
    """The field plane a crop comes from: plate/well/site (or source), time point and z plane."""
    base = "/".join(str(meta.get(k) or "-") for k in ("plate", "well", "site")) if meta.get("well") else str(meta["source"])
    return f"{base}|t{meta.get('t', 0)}|z{meta.get('z') if meta.get('z') is not None else 'all'}"


def rows_from_meta(metas: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The id columns of a list of crop metadata."""
    metas = list(metas)
    out: dict[str, list[str]] = {k: [] for k in ID_COLUMNS}
    for meta in metas:
        for key in ID_COLUMNS:
            value = image_id(meta) if key == "image" else meta.get(key)
            out[key].append("" if value is None else str(value))
    return out


def embed_grid(encoder: torch.nn.Module, grid_batch: GridBatch, pool: str = "cls") -> torch.Tensor:
    """One embedding per sample from a grid encoder: the CLS token or the mean of the valid grid tokens."""
    grid = encoder.forward_grid(grid_batch)
    if pool == "cls":
        return grid.prefix[:, 0]
    if pool == "avg":
        return grid.pool(grid.layout.names).tokens[:, 0]
    raise ValueError(f"unknown pooling {pool!r}; use 'cls' or 'avg'")


def select_channels(batch: Mapping[str, Any], names: Sequence[str] | None) -> dict[str, Any]:
    """The batch restricted to (and ordered by) the channels ``names`` (all when None); a channel missing
    from the batch is an error naming it."""
    if names is None:
        return dict(batch)
    have = list(batch["meta"][0]["channel_names"])
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(f"channel(s) {missing} are not in the batch (it has {have})")
    index = [have.index(n) for n in names]
    metas = [{**m, "channel_names": list(names)} for m in batch["meta"]]
    return {**batch, "image": batch["image"][:, index], "meta": metas}


@torch.no_grad()
def embed_batches(batches: Iterable[Mapping[str, Any]], embed: Callable[[Mapping[str, Any]], torch.Tensor],
                  channels: Sequence[str] | None = None) -> ProfileTable:
    """A crop table from batches with ``meta``: ``embed(batch)`` on each (restricted to ``channels``). A crop
    seen twice (a bad crop's replacement draw repeats a good one) is kept once."""
    chunks, metas = [], []
    for batch in batches:
        batch = select_channels(batch, channels)
        chunks.append(embed(batch).float().cpu().numpy())
        metas.extend(batch["meta"])
    if not chunks:
        raise ValueError("no batches to embed")
    features = np.concatenate(chunks)
    first = {}
    for row, meta in enumerate(metas):
        first.setdefault(str(meta.get("sample_id", row)), row)
    keep = sorted(first.values())
    return ProfileTable(features[keep], rows_from_meta(metas[i] for i in keep))


def embed_archive(adapter, model: torch.nn.Module, sources: Sequence[str | Path], stats: NormStats | None,
                  pool: str = "cls", batch_size: int = 32, device: str | torch.device = "cpu",
                  num_workers: int = 0, channels: Sequence[str] | None = None) -> ProfileTable:
    """One row per crop of ``sources`` (evaluation transforms; batches of one channel set), with ids. Use
    ``sampling=grid`` in the adapter options to tile every field."""
    refs = adapter.discover(sources)
    loader = evaluation_loader(adapter, refs, stats, batch_size=batch_size, seed=int(adapter.config.engine.seed),
                               num_workers=num_workers)
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    try:
        return embed_batches(loader, lambda batch: adapter.embed(model, batch, device, pool), channels)
    finally:
        model.train(was_training)
