"""What a weight conversion did, for the person who asked for it: which weights were mapped where, what
was adapted (position tables recomputed, channels mapped by name, 3 channels summed into 1), what was
dropped and what stays at its fresh initialization (for example the decoder of an encoder-only release)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


def summarize_keys(keys: Iterable[str], limit: int = 8) -> str:
    """``blocks.0.attn.qkv.weight, blocks.1.attn.qkv.weight`` -> ``blocks.{0-1}.attn.qkv.weight``; at most
    ``limit`` patterns, then a count."""
    groups: dict[str, list[int]] = {}
    for key in keys:
        numbers = [int(n) for n in _INDEX.findall(key)]
        pattern = _INDEX.sub(".#", key)
        groups.setdefault(pattern, []).extend(numbers[:1])
    parts = []
    for pattern, numbers in groups.items():
        if numbers and "#" in pattern:
            lo, hi = min(numbers), max(numbers)
            pattern = pattern.replace("#", f"{{{lo}-{hi}}}" if hi > lo else str(lo), 1).replace("#", "*")
        parts.append(pattern)
    # one line per module rather than per tensor: weight/bias of one layer read as one entry
    merged: dict[str, None] = {}
    for part in parts:
        merged[re.sub(r"\.(weight|bias)$", "", part)] = None
    names = list(merged)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def module_of(key: str) -> str:
    """``encoder.blocks.3.attn.qkv.weight`` -> ``encoder.blocks.3``; ``encoder.embedding.proj.weight`` ->
    ``encoder.embedding``: the unit a person reads a mapping in."""
    parts = key.split(".")
    return ".".join(parts[:3] if len(parts) > 2 and parts[2].isdigit() else parts[:2])


@dataclass
class ConversionReport:
    """The record of one conversion; :meth:`lines` is what the run prints and logs."""

    family: str
    source: str
    target: str = ""
    mapped: list[tuple[str, str]] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    initialized: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source_info: dict[str, Any] = field(default_factory=dict, repr=False)  # what is known beside the weights

    def map(self, source_key: str, target_key: str) -> None:
        self.mapped.append((source_key, target_key))

    def adapt(self, note: str) -> None:
        if note not in self.adapted:
            self.adapted.append(note)

    def drop(self, key: str, reason: str) -> None:
        self.dropped.append((key, reason))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def decoder_initialized(self) -> bool:
        """True when the decoder (or its head) was not loaded: an encoder-only release."""
        return any(k.startswith(("decoder.", "head.")) for k in self.initialized)

    def lines(self) -> list[str]:
        """A short human summary: one line per kind of outcome, keys collapsed over block indices."""
        out = [f"converted {self.family} weights from {self.source}" + (f" into {self.target}" if self.target else "")
               + f": {len(self.mapped)} tensors mapped"]
        if self.mapped:
            out.append("  mapped: " + summarize_keys(module_of(t) for _, t in self.mapped))
        out.extend(f"  adapted: {note}" for note in self.adapted)
        reasons: dict[str, list[str]] = {}
        for key, reason in self.dropped:
            reasons.setdefault(reason, []).append(key)
        out.extend(f"  dropped ({reason}): {summarize_keys(keys)}" for reason, keys in reasons.items())
        if self.initialized:
            out.append("  left at initialization: " + summarize_keys(module_of(k) for k in self.initialized))
        if self.decoder_initialized:
            out.append("  the decoder starts fresh (the weights held no fitting decoder)")
        out.extend(f"  note: {note}" for note in self.notes)
        return out

    def render(self) -> str:
        return "\n".join(self.lines())

    def as_dict(self) -> dict[str, Any]:
        return {"family": self.family, "source": self.source, "target": self.target,
                "mapped": [list(p) for p in self.mapped], "adapted": list(self.adapted),
                "dropped": [list(p) for p in self.dropped], "initialized": list(self.initialized),
                "notes": list(self.notes)}
