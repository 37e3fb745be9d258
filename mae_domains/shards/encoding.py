"""One Sample as one MDS row and back, bit for bit.

Columns: ``image`` and ``valid`` (MDS ``ndarray``: any numeric dtype and shape, at least one element;
validity is stored as uint8 because MDS has no bool arrays), ``layout`` (JSON: the image's dtype, whether
there is a validity mask, or why the sample was bad), ``meta`` and ``label`` (JSON, numpy values tagged
so they come back with their dtype). A float image whose values are all integers in the range of a narrower integer
dtype (decoded uint8/uint16/int16 pixels) is stored in that dtype and restored to float exactly;
``prepare --dtype`` stores other types (:mod:`mae_domains.shards.storage`), ``layout`` then holds the
divisor that restores them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mae_domains.data.sample import Sample
from mae_domains.shards.storage import restored_pixels, stored_pixels

COLUMNS = {"image": "ndarray", "valid": "ndarray", "layout": "str", "meta": "str", "label": "str"}
PLACEHOLDER = np.zeros(1, np.uint8)  # MDS encodes no empty arrays
ARRAY_TAG = "__ndarray__"
TUPLE_TAG = "__tuple__"


def to_json(value: Any) -> Any:
    """JSON-ready copy of metadata: numpy arrays and scalars keep their dtype, tuples stay tuples."""
    if isinstance(value, np.ndarray):
        return {ARRAY_TAG: value.tolist(), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return {ARRAY_TAG: value.item(), "dtype": value.dtype.str, "shape": None}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return {TUPLE_TAG: [to_json(v) for v in value]}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)  # e.g. a CRS object: its text


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if ARRAY_TAG in value:
            data = np.array(value[ARRAY_TAG], dtype=np.dtype(value["dtype"]))
            return data[()] if value["shape"] is None else data.reshape(value["shape"])
        if TUPLE_TAG in value:
            return tuple(from_json(v) for v in value[TUPLE_TAG])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def encode_sample(sample: Sample, dtype: str = "as-read") -> dict[str, Any]:
    """The row of ``sample``, its pixels stored as ``dtype`` (see :mod:`mae_domains.shards.storage`)."""
    image = np.ascontiguousarray(sample.image)
    if image.size == 0:
        raise ValueError(f"{sample.source}: the reader returned an empty image")
    valid = PLACEHOLDER if sample.valid is None else np.ascontiguousarray(sample.valid, dtype=bool).view(np.uint8)
    stored, divisor = stored_pixels(image, dtype, str(sample.source))
    layout = {"dtype": image.dtype.str, "valid": sample.valid is not None}
    if divisor is not None:
        layout["divisor"] = divisor
    return {"image": stored, "valid": valid, "layout": json.dumps(layout),
            "meta": json.dumps(to_json(sample.meta)), "label": json.dumps(to_json(sample.label))}


def encode_bad(reason: str) -> dict[str, Any]:
    """A row for a sample that could not be read: no pixels, the reason in its metadata."""
    return {"image": PLACEHOLDER, "valid": PLACEHOLDER, "layout": json.dumps({"bad": reason}), "meta": "{}",
            "label": "null"}


def decode_sample(row: dict[str, Any]) -> Sample | str:
    """The Sample of a row, or the reason it was bad when prepared."""
    layout = json.loads(row["layout"])
    if "bad" in layout:
        return str(layout["bad"])
    image = restored_pixels(row["image"], layout["dtype"], layout.get("divisor"))  # writable, as a reader gives
    valid = np.array(row["valid"]).view(bool) if layout["valid"] else None
    return Sample(image, from_json(json.loads(row["meta"])), valid, from_json(json.loads(row["label"])))
