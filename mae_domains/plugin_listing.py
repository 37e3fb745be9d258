"""One listing of what is installed: adapters, evaluation protocols and checkpoint converters, each with
the entry point that registers it (``mae-domains adapters``)."""

from __future__ import annotations

from mae_domains.conversion.registry import converters
from mae_domains.entry_point_groups import PROTOCOLS, load_group
from mae_domains.protocols import get_protocol, protocol_names
from mae_domains.registry import discover_adapters


def _table(rows: list[tuple[str, str]]) -> list[str]:
    width = max((len(name) for name, _ in rows), default=0)
    return [f"  {name:<{width}}  {text}".rstrip() for name, text in rows]


def render_plugins() -> str:
    """Adapters (name, API version, summary), protocols (name, description, where from) and converters
    (family, the adapters it converts into, summary)."""
    adapters = discover_adapters()
    lines = ["adapters:"] + (_table([(name, f"api {cls.api_version}  {cls.summary}")
                                     for name, cls in sorted(adapters.items())]) or ["  none installed"])
    origins = {entry.obj: entry.value for entry in load_group(PROTOCOLS)}
    protocols = [(name, get_protocol(name)) for name in protocol_names()]
    lines += ["protocols:"] + (_table([(name, f"{p.description}  [{origins.get(type(p), 'registered at run time')}]")
                                       for name, p in protocols]) or ["  none registered"])
    lines += ["converters (pretrain --init FAMILY:PATH):"] + (_table([
        (c.family, f"into {', '.join(c.adapters) or 'any adapter'}: {c.summary}")
        for c in sorted(converters(), key=lambda c: (c.family, c.adapters))]) or ["  none registered"])
    return "\n".join(lines)
