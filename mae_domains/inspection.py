"""``mae-domains inspect``: what an adapter reads from one sample, before augmentation and normalization.

For a path as ``--data`` would find it (a file, a scene folder, a series folder) the adapter's own discovery
lists the samples it yields and its reader reads the chosen one. Three files are written:

- ``sample.npy``: the array as read (``adapter.read``), channels first, float32;
- ``sample.json``: shape, axes, value range (overall and per channel: min, max, 1st/99th percentile, mean,
  std over valid pixels), channel names, spacing or GSD, CRS and bounds, frame and sample counts, the
  validity fraction, the source path and the sample's metadata;
- ``preview.png``: the adapter's picture of it (:meth:`~mae_domains.adapter_api.Adapter.render_sample`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mae_domains.adapter_api import Adapter
from mae_domains.data.sample import BadSampleError, Sample
from mae_domains.preview import full_validity, sample_axes
from mae_domains.registry import discover_refs

SAMPLE_FILE = "sample.npy"
REPORT_FILE = "sample.json"
PREVIEW_FILE = "preview.png"


@dataclass
class Inspection:
    """The files written by :func:`inspect_sample` and the report they hold."""

    array: Path
    report_path: Path
    preview: Path
    report: dict[str, Any]

    def summary(self) -> str:
        """One line for a person: which sample, its shape, value range and valid fraction."""
        r = self.report
        low, high = r["value_range"]["min"], r["value_range"]["max"]
        values = "no finite values" if low is None else f"values {low:.6g} .. {high:.6g}"
        return (f"sample {r['index']} of {r['samples']} in {r['path']} ({r['sample']}): shape {tuple(r['shape'])} "
                f"{'/'.join(r['axes'])}, {values}, {r['valid_fraction']:.1%} valid")


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples, paths and other objects turned into JSON types
    (non-finite floats become None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def channel_statistics(image: np.ndarray, valid: np.ndarray, axes: Sequence[str],
                       names: Sequence[str] | None) -> list[dict[str, Any]]:
    """Per channel over its valid, finite values: min, max, 1st/99th percentile, mean, std, and how many
    valid values are not finite."""
    c = list(axes).index("channel") if "channel" in axes else None
    planes = [image] if c is None else list(np.moveaxis(image, c, 0))
    masks = [valid] if c is None else list(np.moveaxis(valid, c, 0))
    out = []
    for k, (plane, mask) in enumerate(zip(planes, masks)):
        values = plane[mask]
        finite = values[np.isfinite(values)]
        entry: dict[str, Any] = {"index": k, "name": str(names[k]) if names and k < len(names) else None,
                                 "nonfinite": int(values.size - finite.size)}
        if finite.size:
            p1, p99 = np.percentile(finite, [1, 99])
            entry.update(min=float(finite.min()), max=float(finite.max()), p1=float(p1), p99=float(p99),
                         mean=float(finite.mean(dtype=np.float64)), std=float(finite.std(dtype=np.float64)))
        else:
            entry.update(min=None, max=None, p1=None, p99=None, mean=None, std=None)
        out.append(entry)
    return out


def describe_sample(sample: Sample, image: np.ndarray, read_dtype: str) -> dict[str, Any]:
    """The report fields that come from the sample itself (shape, ranges, metadata)."""
    meta = sample.meta
    axes = sample_axes(image, meta)
    valid = full_validity(sample.valid, image.shape)
    channels = channel_statistics(image, valid, axes, meta.get("channel_names"))
    finite = [ch for ch in channels if ch["min"] is not None]
    frames = image.shape[axes.index("time")] if "time" in axes else None
    return {
        "shape": list(image.shape),
        "axes": list(axes),
        "dtype": str(image.dtype),
        "read_dtype": read_dtype,
        "value_range": {"min": min((ch["min"] for ch in finite), default=None),
                        "max": max((ch["max"] for ch in finite), default=None)},
        "channels": channels,
        "channel_names": meta.get("channel_names"),
        "spacing": meta.get("spacing"),
        "gsd": meta.get("gsd"),
        "crs": meta.get("crs"),
        "bounds": meta.get("bounds"),
        "frames": frames,
        "dates": meta.get("dates") if frames is not None else None,
        "valid_mask": sample.valid is not None,
        "valid_fraction": 1.0 if sample.valid is None else float(np.asarray(sample.valid, bool).mean()),
        "label": sample.label,
        "meta": meta,
    }


def read_sample(adapter: Adapter, ref: Any) -> Sample:
    """``adapter.read(ref)``; a failure other than :class:`BadSampleError` is turned into one naming the
    source, so the command reports one line (``--debug`` still shows the original traceback)."""
    try:
        return adapter.read(ref)
    except BadSampleError:
        raise
    except Exception as err:  # any reader failure is a problem with this file for the person inspecting it
        source = getattr(ref, "source", ref)
        raise BadSampleError(str(source), f"cannot read ({type(err).__name__}: {err})") from err


def inspect_sample(adapter: Adapter, path: str | Path, out: str | Path, index: int = 0) -> Inspection:
    """Read sample ``index`` of those ``adapter.discover([path])`` yields and write ``sample.npy``,
    ``sample.json`` and ``preview.png`` into the folder ``out``."""
    refs = discover_refs(adapter, [path])
    if not refs:
        raise FileNotFoundError(f"{path}: adapter {adapter.name} found no sample")
    if not 0 <= index < len(refs):
        raise ValueError(f"{path}: yields {len(refs)} sample(s) for adapter {adapter.name}; "
                         f"--index {index} is out of range 0..{len(refs) - 1}")
    ref = refs[index]
    sample = read_sample(adapter, ref)
    raw = np.asarray(sample.image)
    image = raw.astype(np.float32, copy=False)
    report = {
        "adapter": adapter.name,
        "path": str(path),
        "source": sample.meta.get("source", str(getattr(ref, "source", ref))),
        "sample": str(ref),
        "samples": len(refs),
        "index": index,
        **describe_sample(sample, image, str(raw.dtype)),
    }
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / SAMPLE_FILE, image)
    report_path = folder / REPORT_FILE
    report_path.write_text(json.dumps(jsonable(report), indent=2) + "\n")
    shown = Sample(image, sample.meta, sample.valid, sample.label)
    preview = adapter.render_sample(shown, folder / PREVIEW_FILE)
    return Inspection(folder / SAMPLE_FILE, report_path, Path(preview), report)
