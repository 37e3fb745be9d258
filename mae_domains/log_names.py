"""Log lines cannot be forged by file names: a name holding a line break, a terminal escape or bytes that
are not UTF-8 is written with backslash escapes (``a\\nb.png``, ``\\udcff``), as ``repr`` would, so one
record stays one line.

Layout belongs to the format string; the arguments are data. :func:`install` makes every record escape
the control characters of its arguments, except :class:`LogLines` (multi-line text built on purpose, whose
names were escaped with :func:`printable`). ``skipped.csv`` keeps the exact names: CSV quotes them.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

# C0/C1 controls, Unicode line separators, and the surrogates that stand for bytes of a name that are not
# UTF-8 (``os.fsdecode``): those cannot even be printed to a UTF-8 stream
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(text: Any) -> str:
    """``str(text)`` with each control character written as its backslash escape."""
    return CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


class LogLines(str):
    """Text of several lines on purpose (a list of files); its names are already :func:`printable`."""


def escaped_arg(arg: Any) -> Any:
    if isinstance(arg, LogLines) or not isinstance(arg, (str, os.PathLike, BaseException)):
        return arg
    text = str(arg)
    return printable(text) if CONTROL.search(text) else arg


def escape_record_args(record: logging.LogRecord) -> logging.LogRecord:
    args = record.args
    if isinstance(args, tuple):
        record.args = tuple(escaped_arg(a) for a in args)
    elif isinstance(args, dict):
        record.args = {k: escaped_arg(v) for k, v in args.items()}
    return record


def install() -> None:
    """Escape the arguments of every log record created from now on in this process (and in processes it
    forks, e.g. data loader workers). Installed once by the command line."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "escapes_names", False):
        return

    def escaping_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return escape_record_args(factory(*args, **kwargs))

    escaping_factory.escapes_names = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(escaping_factory)
