"""Labelled downstream data: class folders and CSV label lists -> references, labels and splits.

A source is a prepared shard folder (its labels as prepared), a folder (or path, or glob) whose files are labelled by ``adapter.label_of(ref)`` (by default
the parent folder's name), or a CSV file. A CSV goes through the adapter first: when ``adapter.discover``
reads manifests (the medical adapters read ``image,labels`` with ``A|B|C`` ChestX-ray14 style, "No
Finding" being no label), the labels are ``adapter.label_of(ref)`` (a name, or a tuple of names for a
multi-label list) and the split of a row is ``adapter.split_of(ref)`` when the adapter has that method.
An adapter that does not read CSV files gets the runner's own format: a path column (``path``,
``image``, ``file`` or ``filename``, relative to the CSV's folder), a label column (``labels`` or
``label``, several labels separated by ``|``) and an optional ``split`` column (``train`` / ``test``).

:func:`encode_labels` turns the names into what the loaders carry: class indices for single-label data,
multi-hot float rows when any reference has a tuple of labels (or ``multilabel`` is forced).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mae_domains.registry import discover_refs
from mae_domains.shards import is_prepared, open_archive

PATH_COLUMNS = ("path", "image", "file", "filename")
LABEL_COLUMNS = ("labels", "label")
SPLITS = ("train", "test")
RawLabel = Any  # a class name, or a tuple of names (multi-label)


@dataclass
class LabelledRefs:
    """References with their raw labels and their split (None where the source names none)."""

    refs: list[Any] = field(default_factory=list)
    labels: list[RawLabel] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)

    def extend(self, other: "LabelledRefs") -> None:
        self.refs += other.refs
        self.labels += other.labels
        self.splits += other.splits

    def split(self, name: str) -> "LabelledRefs":
        keep = [i for i, s in enumerate(self.splits) if s == name]
        return LabelledRefs([self.refs[i] for i in keep], [self.labels[i] for i in keep], [name] * len(keep))


def _column(header: Sequence[str], names: Sequence[str]) -> str | None:
    lowered = {h.strip().lower(): h for h in header}
    return next((lowered[n] for n in names if n in lowered), None)


def read_label_csv(path: Path) -> LabelledRefs:
    """The runner's own CSV format (module docstring)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        rows = list(reader)
    path_col, label_col, split_col = (_column(header, PATH_COLUMNS), _column(header, LABEL_COLUMNS),
                                      _column(header, ("split",)))
    if path_col is None or label_col is None:
        raise ValueError(f"{path}: a label list needs a path column ({', '.join(PATH_COLUMNS)}) and a label "
                         f"column ({', '.join(LABEL_COLUMNS)}); found {', '.join(header) or 'no header'}")
    rows = [r for r in rows if (r.get(path_col) or "").strip()]
    names = [tuple(s.strip() for s in (r.get(label_col) or "").split("|") if s.strip()) for r in rows]
    multilabel = any(len(n) != 1 for n in names)
    out = LabelledRefs()
    for row, labels in zip(rows, names):
        image = Path(os.path.expanduser(row[path_col].strip()))
        out.refs.append(image if image.is_absolute() else path.parent / image)
        out.labels.append(labels if multilabel else labels[0])
        out.splits.append((row.get(split_col) or "").strip() or None if split_col else None)
    return out


def _adapter_read_csv(adapter: Any, path: Path) -> LabelledRefs | None:
    """The CSV as the adapter reads it, or None when its ``discover`` does not read CSV manifests."""
    try:
        refs = adapter.discover([str(path)])
    except (FileNotFoundError, ValueError):
        return None
    target = path.resolve()
    if any(Path(os.fspath(r)).resolve() == target for r in refs if isinstance(r, (str, os.PathLike))):
        return None  # the CSV came back as a sample: the adapter does not read manifests
    split_of = getattr(adapter, "split_of", None)
    return LabelledRefs(list(refs), [adapter.label_of(r) for r in refs],
                        [split_of(r) if split_of is not None else None for r in refs])


def read_labelled(adapter: Any, sources: Sequence[str | os.PathLike]) -> LabelledRefs:
    """References, raw labels and splits of folders, paths, globs and CSV label lists (module docstring)."""
    out = LabelledRefs()
    plain: list[str] = []
    for source in sources:
        path = Path(os.fspath(source))
        if path.is_file() and path.suffix.lower() == ".csv":
            out.extend(_adapter_read_csv(adapter, path) or read_label_csv(path))
        elif is_prepared([source]):  # shards keep the labels the adapter gave when they were prepared
            refs = open_archive(adapter, [source])[1]
            out.extend(LabelledRefs(refs, [ref.label for ref in refs], [None] * len(refs)))
        else:
            plain.append(str(source))
    if plain:
        refs = discover_refs(adapter, plain)
        out.extend(LabelledRefs(list(refs), [adapter.label_of(r) for r in refs], [None] * len(refs)))
    return out


def _names(label: RawLabel) -> tuple[str, ...]:
    if isinstance(label, (tuple, list)):
        return tuple(str(n) for n in label)
    return (str(label),)


def encode_labels(train: Sequence[RawLabel], test: Sequence[RawLabel], classes: Sequence[str] | None = None,
                  multilabel: bool | None = None, where: str = "dataset") -> tuple[list[Any], list[Any], list[str], bool]:
    """``(train labels, test labels, class names, multilabel)``: class indices, or multi-hot float32 rows when
    any label is a tuple of names (or ``multilabel``). Single-label classes come from the training labels
    (the test labels when there are none); multi-label classes from both splits."""
    every = list(train) + list(test)
    if multilabel is None:
        multilabel = any(isinstance(label, (tuple, list)) for label in every)
    if multilabel:
        names = sorted({n for label in every for n in _names(label)}) if classes is None else [str(c) for c in classes]
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted({n for label in every for n in _names(label)} - set(index))
        if unknown:
            raise ValueError(f"{where}: labels {unknown} are not among the classes {names}")

        def hot(label: RawLabel) -> np.ndarray:
            row = np.zeros(len(names), np.float32)
            row[[index[n] for n in _names(label)]] = 1.0
            return row

        return [hot(label) for label in train], [hot(label) for label in test], names, True
    source = train if len(train) else test
    names = sorted({str(label) for label in source}) if classes is None else [str(c) for c in classes]
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted({str(label) for label in every} - set(index))
    if unknown:
        raise ValueError(f"{where}: classes {unknown} do not occur in the training set ({names})")
    return [index[str(label)] for label in train], [index[str(label)] for label in test], names, False
