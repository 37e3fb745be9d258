"""Labelled downstream data (class folders, CSV label lists): see :mod:`mae_domains.labelled.sources`, one
floor down so the engine's online kNN reads the same format. The names stay importable here."""

from mae_domains.labelled.sources import (  # noqa: F401
    LABEL_COLUMNS, PATH_COLUMNS, SPLITS, LabelledRefs, RawLabel, encode_labels, read_label_csv, read_labelled,
)

__all__ = ["LABEL_COLUMNS", "PATH_COLUMNS", "SPLITS", "LabelledRefs", "RawLabel", "encode_labels", "read_label_csv",
           "read_labelled"]
