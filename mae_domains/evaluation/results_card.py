"""Model cards with evaluation results: the card itself lives in the core
(:mod:`mae_domains.runs.model_card`, export writes it); this adds the results table from result records."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from mae_domains.evaluation.records import ResultRecord, render_markdown
from mae_domains.runs import model_card as core
from mae_domains.runs.model_card import ModelCardInfo, model_card_from_checkpoint


def results_table(info: ModelCardInfo, records: Iterable[ResultRecord]) -> str:
    """Markdown table of ``records`` (mean ± std over seeds); records of other checkpoints are left out
    when some match ``info.name``."""
    records = list(records)
    own = [r for r in records if r.checkpoint == info.name]
    records = own or records
    return render_markdown(records, aggregate_seeds=True, per_class=False) if records else ""


def render_model_card(info: ModelCardInfo, records: Iterable[ResultRecord] = ()) -> str:
    """The card as Markdown with the results of ``records``."""
    return core.render_model_card(info, results_table(info, records))


def write_model_card(path: str | os.PathLike, info: ModelCardInfo | Mapping[str, Any],
                     records: Iterable[ResultRecord] = ()) -> Path:
    """Write the card with the results of ``records`` (``path``: a file, or an export folder)."""
    folder = Path(path) if Path(path).is_dir() or not Path(path).suffix else Path(path).parent
    card = info if isinstance(info, ModelCardInfo) else ModelCardInfo.from_export(info, name=folder.name)
    return core.write_model_card(path, card, results_table(card, records))


__all__ = ["ModelCardInfo", "model_card_from_checkpoint", "render_model_card", "results_table", "write_model_card"]
