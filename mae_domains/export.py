"""``from mae_domains.export import export_run`` (kept for existing callers): see :mod:`mae_domains.runs.export`."""

from mae_domains.runs.export import export_run

__all__ = ["export_run"]
