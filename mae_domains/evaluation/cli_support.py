"""``mae-domains evaluate``: registered protocols on one run, or a whole benchmark file.

    mae-domains evaluate --run runs/demo --train data/train --test data/test --protocol knn --out results
    mae-domains evaluate --run runs/xray --manifest labels.csv --protocol finetune   # CSV with a split column
    mae-domains evaluate --run runs/demo --protocol anomaly --test data/screening     # normal/ and abnormal/
    mae-domains evaluate --benchmark benchmarks/downstream.yaml [--out results]

Without ``--protocol`` the run's ``eval.protocols`` are evaluated; the run's ``eval`` section gives the
protocol defaults (``knn_k``, ``probe_epochs``, ``pool`` ...), and ``KEY=VALUE`` settings after the options win
over it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import yaml

from mae_domains.evaluation.records import (
    ResultRecord, merge_records, read_jsonl, render_markdown, write_jsonl, write_reports,
)
from mae_domains.evaluation.runner import (
    benchmark_output_dir, evaluate_checkpoint, load_benchmark_file, run_benchmark_file,
)
from mae_domains.protocols import get_protocol


def _report(records: list[ResultRecord], out_dir: Path) -> None:
    print(render_markdown([r for r in records if r.class_name is None], aggregate_seeds=True, per_class=False), end="")
    print(f"\n{len(records)} records: {(out_dir / 'results.jsonl').resolve()}")
    print(f"tables: {(out_dir / 'results.md').resolve()}, {(out_dir / 'results.csv').resolve()}")


def _scalar(text: str) -> Any:
    """A YAML scalar, with numbers YAML 1.1 leaves as text (``1e-3``) read as floats."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_settings(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``["k=5", "pool=avg"]`` -> ``{"k": 5, "pool": "avg"}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"setting {pair!r} is not KEY=VALUE")
        out[key.strip()] = _scalar(value)
    return out


def _run_config(path: str | None) -> dict[str, Any] | None:
    """The run config of ``--config`` (for published weights), validated, as a dict."""
    if not path:
        return None
    from mae_domains.config import load_config

    return load_config(path).to_dict()


def evaluate_command(args: argparse.Namespace) -> int:
    """Run what the parsed ``evaluate`` arguments ask for and print the summary table; returns 0.

    Reads ``args.benchmark`` (YAML file) or ``args.run`` + ``args.train`` + ``args.test`` (lists of paths)
    + ``args.protocol`` (None: the run's ``eval.protocols``), and ``args.out``, ``args.device``,
    ``args.seed``, optionally ``args.set`` (``KEY=VALUE`` protocol settings).
    """
    if args.benchmark:
        records = run_benchmark_file(args.benchmark, out_dir=args.out, device=args.device)
        _report(records, benchmark_output_dir(args.benchmark, load_benchmark_file(args.benchmark), args.out))
        return 0
    out = Path(args.out or "results")
    manifest = getattr(args, "manifest", None)
    protocols = [args.protocol] if args.protocol else None
    needs_train = protocols is None or any(get_protocol(p).needs_train for p in protocols)
    wanted = [("--run", args.run)] + ([] if manifest else [("--test", args.test)] +
                                      ([("--train", args.train)] if needs_train else []))
    missing = [flag for flag, value in wanted if not value]
    if missing:
        raise ValueError(f"evaluate needs {', '.join(missing)} (or --manifest CSV, or --benchmark FILE)")
    named = Path(manifest) if manifest else Path(args.test[0])
    results = out / "results.jsonl"
    earlier = read_jsonl(results) if results.is_file() else []
    records = evaluate_checkpoint(
        args.run, args.protocol, out, train=args.train, test=args.test, manifest=manifest, seeds=[args.seed],
        device=args.device, settings=parse_settings(getattr(args, "set", None)),
        adapter=getattr(args, "adapter", None), config=_run_config(getattr(args, "config", None)),
        dataset_name=(named.stem if manifest else named.parent.name) or "dataset",
    )
    if earlier:  # a folder of earlier evaluations gains these records; the reports cover all of them
        combined, replaced = merge_records(earlier, records)
        write_jsonl(combined, results)
        write_reports(combined, out)
        print(f"{out}: {len(records)} record(s) added to the {len(earlier)} already in {results.name}"
              + (f" ({replaced} of the same evaluation replaced)" if replaced else "")
              + "; the tables and plots cover all of them")
    _report(records, out)
    return 0
