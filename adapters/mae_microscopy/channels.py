"""Channel names: from the file, a manifest or the config, through aliases, to the channels a run uses.

Channel identity is its *name*, never its index: names travel with every crop, the
channel code is looked up by name, and channels are selected and reordered by name. Resolution order:

1. the names the file stores (OME ``Channel/@Name``, ImageJ labels, ``omero`` labels, ``channel_map`` of
   per-channel files); files without names get ``channel_<i>``;
2. names given for unnamed files, positionally: the manifest row's ``channel_names``, else
   ``data.options.channel_names``; a file that *does* name its channels must agree;
3. ``channel_aliases`` map synonyms to one name (``Hoechst 33342 -> DNA``), case-insensitively;
4. ``channels`` (optional) selects and orders channels by name.

Names outside the model's ``channel_vocabulary`` get the shared fallback code, or are reported as bad
input when ``unknown_channels`` is ``error``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from mae_domains.data.sample import BadSampleError

# The Cell Painting stains (JUMP names) and brightfield, plus the RGB names of H&E / brightfield colour.
CELL_PAINTING_CHANNELS = ("DNA", "RNA", "ER", "AGP", "Mito")
DEFAULT_VOCABULARY = CELL_PAINTING_CHANNELS + ("Brightfield", "red", "green", "blue")
UNKNOWN_POLICIES = ("fallback", "error")


def is_placeholder(name: str) -> bool:
    """Names a reader invents for unnamed channels: ``channel_0`` (files), ``ch1`` (per-channel files)."""
    return re.fullmatch(r"(channel_|ch)\d+", name) is not None


@dataclass(frozen=True)
class ChannelPlan:
    """Which stored channels a field contributes (``indices``, in order) and their final ``names``."""

    indices: tuple[int, ...]
    names: tuple[str, ...]


class ChannelResolver:
    """Turns a field's stored names into the run's channel plan (see the module docstring)."""

    def __init__(self, select: Sequence[str] | None = None, names: Sequence[str] | None = None,
                 aliases: Mapping[str, str] | None = None, vocabulary: Sequence[str] = DEFAULT_VOCABULARY,
                 unknown: str = "fallback") -> None:
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"data.options.unknown_channels must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}")
        if select is not None and len(set(select)) != len(select):
            raise ValueError(f"data.options.channels lists a name twice: {list(select)}")
        self.aliases = {str(k).strip().lower(): str(v) for k, v in (aliases or {}).items()}
        self.select = None if select is None else tuple(self.canonical(str(n)) for n in select)
        self.names = None if names is None else tuple(str(n) for n in names)
        self.vocabulary = tuple(vocabulary)
        self.unknown = unknown

    def canonical(self, name: str) -> str:
        """The alias target of ``name`` (case-insensitive), else the name itself, trimmed."""
        name = str(name).strip()
        return self.aliases.get(name.lower(), name)

    def stored_names(self, source: str, stored: Sequence[str], given: Sequence[str] | None = None,
                     expected_count: int | None = None) -> tuple[str, ...]:
        """The field's names before selection: stored names, or the manifest/config names for unnamed
        channels; counts and disagreements are bad input."""
        stored = tuple(stored)
        if expected_count is not None and expected_count != len(stored):
            raise BadSampleError(source, f"has {len(stored)} channel(s) {list(stored)} but the manifest expects "
                                         f"{expected_count}")
        given = tuple(given) if given is not None else self.names
        if given is not None:
            if len(given) != len(stored):
                where = "its manifest row" if given is not self.names else "data.options.channel_names"
                raise BadSampleError(source, f"has {len(stored)} channel(s) but {where} names {len(given)}: "
                                             f"{list(given)}")
            named = [not is_placeholder(n) for n in stored]
            mismatch = [(s, g) for s, g, k in zip(stored, given, named)
                        if k and self.canonical(s).lower() != self.canonical(g).lower()]
            if mismatch:
                raise BadSampleError(source, "the file names its channels differently from the names given for it: "
                                             + ", ".join(f"{s!r} vs {g!r}" for s, g in mismatch))
            stored = tuple(g if not k else s for s, g, k in zip(stored, given, named))
        names = tuple(self.canonical(n) for n in stored)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise BadSampleError(source, f"channel name(s) {duplicates} occur twice among {list(names)}; name the "
                                         "channels (data.options.channel_names or channel_aliases)")
        return names

    def plan(self, source: str, stored: Sequence[str], given: Sequence[str] | None = None,
             expected_count: int | None = None) -> ChannelPlan:
        """The channels this field contributes, in the run's order."""
        names = self.stored_names(source, stored, given, expected_count)
        if self.select is None:
            indices = tuple(range(len(names)))
        else:
            missing = [n for n in self.select if n not in names]
            if missing:
                raise BadSampleError(source, f"lacks channel(s) {missing} asked for by data.options.channels; it "
                                             f"has {list(names)}")
            indices = tuple(names.index(n) for n in self.select)
        chosen = tuple(names[i] for i in indices)
        if self.unknown == "error":
            outside = [n for n in chosen if n not in self.vocabulary]
            if outside:
                raise BadSampleError(source, f"channel name(s) {outside} are outside the channel vocabulary "
                                             f"{list(self.vocabulary)} (data.options.channel_vocabulary; set "
                                             "unknown_channels=fallback to embed them with the shared fallback code)")
        return ChannelPlan(indices, chosen)

    def unknown_names(self, names: Sequence[str]) -> list[str]:
        """Names that will get the fallback code."""
        return [n for n in names if n not in self.vocabulary]
