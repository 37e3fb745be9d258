"""Why samples could not be read: the first files and a count per reason, for one clear message.

A folder of DICOM files given to the wrong adapter, a 3D TIFF, a series with too few dates: every
sample fails for the same reason, and the user must see that reason (with a file) instead of a bare
"could not read any sample".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mae_domains.data.sample import BadSampleError
from mae_domains.log_names import LogLines, printable

_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?", re.IGNORECASE)


def failure_parts(ref: object, err: BaseException) -> tuple[str, str]:
    """``(file, cause)`` of an exception raised while reading ``ref``."""
    if isinstance(err, BadSampleError):
        return err.source, err.reason
    return str(ref), f"{type(err).__name__}: {err}"


def reason_key(reason: str) -> str:
    """Reasons that differ only in numbers (counts, shapes, sizes) are one kind of failure."""
    return _NUMBER.sub("#", reason)


@dataclass
class ReasonGroup:
    reason: str  # the first full message of this kind
    files: list[str] = field(default_factory=list)
    count: int = 0


@dataclass
class ReadFailures:
    """Failures grouped by reason, in order of first appearance, keeping the first files of each."""

    keep_files: int = 3
    groups: dict[str, ReasonGroup] = field(default_factory=dict)

    def add(self, ref: object, err: BaseException) -> None:
        source, reason = failure_parts(ref, err)
        group = self.groups.setdefault(reason_key(reason), ReasonGroup(reason))
        group.count += 1
        if len(group.files) < self.keep_files:
            group.files.append(source)

    @property
    def total(self) -> int:
        return sum(g.count for g in self.groups.values())

    def __bool__(self) -> bool:
        return bool(self.groups)

    def summary(self, max_reasons: int = 5) -> LogLines:
        """One line per reason, most frequent first: ``N x reason (e.g. file, file)`` (names escaped)."""
        ranked = sorted(self.groups.values(), key=lambda g: -g.count)
        lines = [f"  {g.count} x {printable(g.reason)} (e.g. {', '.join(map(printable, g.files))})"
                 for g in ranked[:max_reasons]]
        rest = ranked[max_reasons:]
        if rest:
            lines.append(f"  ... and {sum(g.count for g in rest)} more in {len(rest)} other reason(s)")
        return LogLines("\n".join(lines))


class StatsError(ValueError):
    """No sample was usable for normalization statistics; the message ends with the reasons, and
    ``failures`` holds them."""

    def __init__(self, message: str, failures: ReadFailures) -> None:
        super().__init__(f"{message}; reasons:\n{failures.summary()}" if failures else message)
        self.failures = failures
