"""Result records: one JSON object per line, rendered into CSV, a Markdown table and PNG plots.

Rendering is a pure function of the records: rows are sorted on fixed keys and numbers are formatted
with a fixed precision, so the same records always give byte-identical CSV and Markdown, whatever order
they were written in. Plots use matplotlib's Agg canvas directly (no pyplot, no display needed).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

import mae_domains
from mae_domains.protocols import ProtocolResult

CSV_COLUMNS = (
    "adapter", "checkpoint", "step", "dataset", "protocol", "config_hash", "metric", "class_name",
    "value", "ci_low", "ci_high", "seed", "n_train", "n_test", "version", "settings",
)


def config_hash(protocol: str, settings: Mapping[str, Any]) -> str:
    """Short hash of a protocol and its settings (seed excluded, so seeds of one setup group together)."""
    payload = json.dumps({"protocol": protocol, "settings": {k: v for k, v in settings.items() if k != "seed"}},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _clean_number(value: Any) -> Any:
    """JSON has no NaN: undefined numbers are stored as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class ResultRecord:
    """One metric value of one (checkpoint, dataset, protocol, settings, seed) run.

    ``class_name`` is set for per-class values (e.g. ROC-AUC of one label) and None for summary metrics;
    ``step`` is the pretraining step of the checkpoint when known (for metric-vs-step plots).
    """

    adapter: str
    checkpoint: str
    dataset: str
    protocol: str
    metric: str
    value: float
    settings: dict[str, Any] = field(default_factory=dict)
    ci_low: float | None = None
    ci_high: float | None = None
    seed: int = 0
    n_train: int = 0
    n_test: int = 0
    class_name: str | None = None
    step: int | None = None
    version: str = mae_domains.__version__
    config_hash: str = ""

    def __post_init__(self) -> None:
        if not self.config_hash:
            self.config_hash = config_hash(self.protocol, self.settings)

    def to_dict(self) -> dict[str, Any]:
        return {k: _clean_number(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ResultRecord":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown result record keys: {', '.join(unknown)}")
        values = dict(data)
        values["value"] = float("nan") if values.get("value") is None else float(values["value"])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def records_from_result(
    result: ProtocolResult,
    *,
    protocol: str,
    settings: Mapping[str, Any],
    seed: int = 0,
    adapter: str = "",
    checkpoint: str = "",
    dataset: str = "",
    step: int | None = None,
) -> list[ResultRecord]:
    """The records of one protocol run: its summary metrics first (with their intervals, when given), then
    every per-class value. The one place where a protocol's metrics become records."""
    base = dict(adapter=adapter, checkpoint=checkpoint, dataset=dataset, protocol=protocol, settings=dict(settings),
                seed=seed, n_train=result.n_train, n_test=result.n_test, step=step)
    records = []
    for metric, value in result.summary.items():
        low, high = result.intervals.get(metric, (None, None))
        records.append(ResultRecord(metric=metric, value=float(value), ci_low=low, ci_high=high, **base))
    for metric, values in result.per_class.items():
        for class_name, value in values.items():
            records.append(ResultRecord(metric=metric, value=float(value), class_name=class_name, **base))
    return records


def write_jsonl(records: Iterable[ResultRecord], path: str | os.PathLike, append: bool = False) -> Path:
    """Write records one JSON object per line (atomically when not appending)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(r.to_json() + "\n" for r in records)
    if append:
        with open(path, "a", encoding="utf-8") as f:
            f.write(lines)
        return path
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(lines, encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_jsonl(path: str | os.PathLike) -> list[ResultRecord]:
    """Records from a JSONL file (blank lines ignored); errors name the line."""
    records = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(ResultRecord.from_dict(json.loads(line)))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}:{number}: not a result record ({err})") from None
    return records


def _identity(r: ResultRecord) -> tuple:
    """What one evaluation measured: the same identity means the same measurement, repeated."""
    return (r.dataset, r.protocol, r.adapter, r.checkpoint, r.step, r.config_hash, r.metric, r.class_name, r.seed)


def merge_records(earlier: Sequence[ResultRecord], new: Sequence[ResultRecord]) -> tuple[list[ResultRecord], int]:
    """``earlier`` records followed by ``new`` ones; an earlier record of the same measurement (dataset,
    protocol, checkpoint, step, settings, metric, class and seed) is replaced. Returns the records and how
    many earlier ones were replaced."""
    measured = {_identity(r) for r in new}
    kept = [r for r in earlier if _identity(r) not in measured]
    return kept + list(new), len(earlier) - len(kept)


def _sort_key(r: ResultRecord) -> tuple:
    return (
        r.dataset, r.protocol, r.adapter, r.checkpoint, -1 if r.step is None else r.step, r.config_hash,
        r.metric, r.class_name or "", r.seed, r.value if math.isfinite(r.value) else math.inf,
    )


def sorted_records(records: Iterable[ResultRecord]) -> list[ResultRecord]:
    return sorted(records, key=_sort_key)


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{digits}f}"


def _settings_text(settings: Mapping[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)


def render_csv(records: Iterable[ResultRecord]) -> str:
    """All records (summary and per-class) as CSV with a fixed column order and row order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in sorted_records(records):
        row = {**asdict(r), "settings": _settings_text(r.settings)}
        for key in ("value", "ci_low", "ci_high"):
            row[key] = _fmt(row[key], 6)
        row["step"] = "" if r.step is None else r.step
        row["class_name"] = r.class_name or ""
        writer.writerow([row[c] for c in CSV_COLUMNS])
    return buffer.getvalue()


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _group_key(r: ResultRecord) -> tuple:
    return (r.dataset, r.protocol, r.adapter, r.checkpoint, r.step, r.config_hash, r.metric, r.class_name)


def aggregate_over_seeds(records: Iterable[ResultRecord]) -> list[dict[str, Any]]:
    """Mean, sample standard deviation and count over seeds for each (dataset, protocol, checkpoint, step,
    config, metric, class) group, in sorted order."""
    groups: dict[tuple, list[ResultRecord]] = defaultdict(list)
    for r in sorted_records(records):
        groups[_group_key(r)].append(r)
    out = []
    for key in sorted(groups, key=lambda k: _sort_key(groups[k][0])):
        members = groups[key]
        values = np.array([m.value for m in members if math.isfinite(m.value)], dtype=np.float64)
        first = members[0]
        out.append({
            "record": first,
            "mean": float(values.mean()) if values.size else float("nan"),
            "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "seeds": sorted({m.seed for m in members}),
            "n_test": first.n_test,
        })
    return out


def render_markdown(records: Iterable[ResultRecord], aggregate_seeds: bool = False, per_class: bool = True,
                    title: str | None = None) -> str:
    """A Markdown report: the summary table (one row per record, or mean ± std over seeds), a per-class
    table, and the settings behind each config hash."""
    records = sorted_records(records)
    summary = [r for r in records if r.class_name is None]
    lines: list[str] = [f"# {title}", ""] if title else []
    step_text = lambda r: "" if r.step is None else str(r.step)  # noqa: E731
    if aggregate_seeds:
        rows = [
            (g["record"].dataset, g["record"].protocol, g["record"].checkpoint, step_text(g["record"]),
             g["record"].config_hash, g["record"].metric, _seed_summary(g),
             ",".join(map(str, g["seeds"])), str(g["n_test"]))
            for g in aggregate_over_seeds(summary)
        ]
        header = ("dataset", "protocol", "checkpoint", "step", "config", "metric",
                  "mean ± std over n seeds (one seed: its 95% bootstrap CI)", "seeds", "n_test")
    else:
        rows = [
            (r.dataset, r.protocol, r.checkpoint, step_text(r), r.config_hash, r.metric, _fmt(r.value),
             f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if r.ci_low is not None and r.ci_high is not None else "",
             str(r.seed), str(r.n_train), str(r.n_test))
            for r in summary
        ]
        header = ("dataset", "protocol", "checkpoint", "step", "config", "metric", "value", "95% CI", "seed", "n_train", "n_test")
    lines += _markdown_table(header, rows)
    per_class_records = [r for r in records if r.class_name is not None]
    if per_class and per_class_records:
        lines += ["", "## Per class", ""]
        lines += _markdown_table(
            ("dataset", "protocol", "checkpoint", "config", "metric", "class", "value", "seed"),
            ((r.dataset, r.protocol, r.checkpoint, r.config_hash, r.metric, r.class_name or "", _fmt(r.value), str(r.seed))
             for r in per_class_records),
        )
    settings_by_hash = {r.config_hash: (r.protocol, r.settings) for r in records}
    if settings_by_hash:
        lines += ["", "## Settings", ""]
        lines += _markdown_table(
            ("config", "protocol", "settings"),
            ((h, settings_by_hash[h][0], "`" + _settings_text(settings_by_hash[h][1]) + "`") for h in sorted(settings_by_hash)),
        )
    versions = sorted({r.version for r in records})
    if versions:
        lines += ["", f"mae-domains version: {', '.join(versions)}"]
    return "\n".join(lines) + "\n"


def _seed_summary(group: Mapping[str, Any]) -> str:
    """``mean ± std (n=3 seeds)``; for one seed its value, ``n=1`` and the record's bootstrap interval (a
    standard deviation of one value would read as a certainty it is not)."""
    if not math.isfinite(group["mean"]):
        return ""
    n = len(group["seeds"])
    if n > 1:
        return f"{_fmt(group['mean'])} ± {_fmt(group['std'])} (n={n} seeds)"
    record = group["record"]
    if record.ci_low is not None and record.ci_high is not None:
        return f"{_fmt(group['mean'])} (n=1 seed; 95% CI [{_fmt(record.ci_low)}, {_fmt(record.ci_high)}])"
    return f"{_fmt(group['mean'])} (n=1 seed; no interval)"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "unnamed"


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_metric_vs_step(records: Iterable[ResultRecord], metric: str, path: str | os.PathLike) -> Path | None:
    """One line per (dataset, protocol, config) of ``metric`` against the checkpoint's pretraining step
    (mean over seeds, error bars = std); None when no line has two steps (a single step is no curve: the
    tables hold its value)."""
    groups = [g for g in aggregate_over_seeds(r for r in records if r.class_name is None and r.metric == metric)
              if g["record"].step is not None]
    lines: dict[tuple, list[tuple[int, float, float]]] = defaultdict(list)
    for g in groups:
        r = g["record"]
        lines[(r.dataset, r.protocol, r.config_hash)].append((r.step, g["mean"], g["std"]))
    if not any(len({p[0] for p in points}) > 1 for points in lines.values()):
        return None
    figure = _new_figure(6.4, 4.2)
    axes = figure.add_subplot()
    for (dataset, protocol, hash_), points in sorted(lines.items()):
        points.sort()
        axes.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                      marker="o", capsize=3, label=f"{dataset} / {protocol} ({hash_[:6]})")
    axes.set_xlabel("pretraining step")
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    return _save_plot(figure, path)


def plot_per_class(records: Iterable[ResultRecord], dataset: str, metric: str, path: str | os.PathLike) -> Path | None:
    """Grouped bars of a per-class metric on one dataset: classes on x, one bar per (checkpoint, protocol,
    config), mean over seeds; None when there are no such records."""
    groups = aggregate_over_seeds(r for r in records if r.class_name is not None and r.dataset == dataset and r.metric == metric)
    if not groups:
        return None
    classes = sorted({g["record"].class_name for g in groups})
    series: dict[tuple, dict[str, float]] = defaultdict(dict)
    for g in groups:
        r = g["record"]
        series[(r.checkpoint, r.step, r.protocol, r.config_hash)][r.class_name] = g["mean"]
    figure = _new_figure(max(6.4, 0.5 * len(classes) * max(len(series), 1) + 2), 4.2)
    axes = figure.add_subplot()
    width = 0.8 / len(series)
    x = np.arange(len(classes))
    for i, (key, values) in enumerate(sorted(series.items(), key=lambda kv: tuple(str(v) for v in kv[0]))):
        checkpoint, step, protocol, hash_ = key
        label = f"{checkpoint}{'' if step is None else f'@{step}'} / {protocol} ({hash_[:6]})"
        axes.bar(x + i * width - 0.4 + width / 2, [values.get(c, np.nan) for c in classes], width, label=label)
    axes.set_xticks(x, classes, rotation=45, ha="right", fontsize=8)
    axes.set_ylabel(metric)
    axes.set_title(f"{dataset}: {metric} per class")
    axes.legend(fontsize=7)
    return _save_plot(figure, path)


def render_plots(records: Sequence[ResultRecord], out_dir: str | os.PathLike) -> list[Path]:
    """Metric-vs-step plots (one per summary metric) and per-class bars (one per dataset and metric)."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    for metric in sorted({r.metric for r in records if r.class_name is None}):
        path = plot_metric_vs_step(records, metric, out_dir / f"{_safe_name(metric)}_vs_step.png")
        if path:
            written.append(path)
    for dataset, metric in sorted({(r.dataset, r.metric) for r in records if r.class_name is not None}):
        path = plot_per_class(records, dataset, metric, out_dir / f"per_class_{_safe_name(metric)}_{_safe_name(dataset)}.png")
        if path:
            written.append(path)
    return written


def write_reports(records: Sequence[ResultRecord], out_dir: str | os.PathLike, title: str = "Results",
                  plots: bool = True) -> dict[str, Path]:
    """Write ``results.csv``, ``results.md`` (per record), ``summary.md`` (mean ± std over seeds) and
    plots under ``out_dir/plots``; returns the written paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {
        "csv": out_dir / "results.csv",
        "markdown": out_dir / "results.md",
        "summary": out_dir / "summary.md",
    }
    written["csv"].write_text(render_csv(records), encoding="utf-8")
    written["markdown"].write_text(render_markdown(records, title=title), encoding="utf-8")
    written["summary"].write_text(render_markdown(records, aggregate_seeds=True, per_class=False, title=f"{title} (over seeds)"),
                                  encoding="utf-8")
    if plots:
        for path in render_plots(records, out_dir / "plots"):
            written[f"plot:{path.name}"] = path
    return written


def regenerate_reports(jsonl_path: str | os.PathLike, out_dir: str | os.PathLike | None = None, title: str = "Results",
                       plots: bool = True) -> dict[str, Path]:
    """Re-render CSV, Markdown and plots from a ``results.jsonl`` (into its folder by default)."""
    jsonl_path = Path(jsonl_path)
    return write_reports(read_jsonl(jsonl_path), out_dir or jsonl_path.parent, title, plots)


def _save_plot(figure, path: str | os.PathLike) -> Path:
    """Write a plot without the software stamp, so the same records give byte-identical PNGs."""
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata={"Software": None})
    return path
