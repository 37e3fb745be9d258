"""Embeddings of crops and chips aggregated per image or per well (the mean, as the cell-biology workflow
takes profiles): one row per group, with the group's ids and how many samples it averages."""

from __future__ import annotations

import numpy as np

from mae_domains.runs.embedding import EmbeddingResult

# The metadata keys that name a group, by level; ``source`` is the sample's file relative to the data root.
GROUP_KEYS = {"image": ("plate", "well", "site", "source"), "well": ("plate", "well")}
AGGREGATE_LEVELS = ("none", *GROUP_KEYS)
ID_KEYS = ("plate", "well", "site", "perturbation")  # kept on an aggregated row when its samples agree


def group_key(result: EmbeddingResult, row: int, level: str) -> tuple[str, ...]:
    """The ids of sample ``row``'s group at ``level`` (missing plate/site ids are empty strings)."""
    position = result.positions[row]
    values = []
    for key in GROUP_KEYS[level]:
        value = result.sources[row] if key == "source" else position.get(key)
        values.append("" if value is None else str(value))
    return tuple(values)


def shared_ids(result: EmbeddingResult, rows: list[int]) -> dict[str, object]:
    """The ids (plate, well, site, perturbation) that every sample of a group has in common."""
    out = {}
    for key in ID_KEYS:
        values = {str(result.positions[r].get(key)) for r in rows}
        if len(values) == 1 and result.positions[rows[0]].get(key) is not None:
            out[key] = result.positions[rows[0]][key]
    return out


def aggregate(result: EmbeddingResult, level: str) -> EmbeddingResult:
    """Mean embedding per group, groups in order of first appearance. ``well`` needs ``well`` ids in the
    samples' metadata (plate manifests, OME-Zarr plates, plate-reader file names)."""
    if level == "none":
        return result
    if level not in GROUP_KEYS:
        raise ValueError(f"unknown aggregation {level!r}; use one of {', '.join(AGGREGATE_LEVELS)}")
    if level == "well" and not any(p.get("well") is not None for p in result.positions):
        raise ValueError("--aggregate well needs well ids in the samples' metadata (plate/well columns of a "
                         "manifest, an OME-Zarr plate or plate-reader file names); none of the samples has one")
    groups: dict[tuple[str, ...], list[int]] = {}
    for row in range(len(result.ids)):
        groups.setdefault(group_key(result, row, level), []).append(row)
    embeddings = np.stack([result.embeddings[rows].mean(axis=0) for rows in groups.values()])
    ids = ["/".join(part for part in key if part) for key in groups]
    positions = [{**shared_ids(result, rows), "count": len(rows)} for rows in groups.values()]
    sources = [result.sources[rows[0]] if level == "image" else "" for rows in groups.values()]
    return EmbeddingResult(embeddings.astype(result.embeddings.dtype), ids, sources, positions, result.skipped,
                           result.root, result.total, result.left_out)
