"""``mae-domains evaluate``: one protocol on one run, or a whole benchmark file.

    mae-domains evaluate --run runs/demo --train data/train --test data/test --protocol knn --out results
    mae-domains evaluate --benchmark benchmarks/downstream.yaml [--out results]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mae_domains.evaluation.records import ResultRecord, render_markdown
from mae_domains.evaluation.runner import PROTOCOLS, evaluate_checkpoint, run_benchmark_file


def _report(records: list[ResultRecord], out_dir: Path) -> None:
    print(render_markdown([r for r in records if r.class_name is None], aggregate_seeds=True, per_class=False), end="")
    print(f"\n{len(records)} records: {(out_dir / 'results.jsonl').resolve()}")
    print(f"tables: {(out_dir / 'results.md').resolve()}, {(out_dir / 'results.csv').resolve()}")


def evaluate_command(args: argparse.Namespace) -> int:
    """Run what the parsed ``evaluate`` arguments ask for and print the summary table; returns 0.

    Reads ``args.benchmark`` (YAML file) or ``args.run`` + ``args.train`` + ``args.test`` (lists of paths)
    + ``args.protocol``, and ``args.out``, ``args.device``, ``args.seed``.
    """
    out = Path(args.out)
    if args.benchmark:
        records = run_benchmark_file(args.benchmark, out_dir=out, device=args.device)
        _report(records, out)
        return 0
    missing = [flag for flag, value in (("--run", args.run), ("--train", args.train), ("--test", args.test)) if not value]
    if missing:
        raise ValueError(f"evaluate needs {', '.join(missing)} (or --benchmark FILE)")
    if args.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {args.protocol!r}; use one of {', '.join(PROTOCOLS)}")
    records = evaluate_checkpoint(
        args.run, args.protocol, out, train=args.train, test=args.test, seeds=[args.seed], device=args.device,
        dataset_name=Path(args.test[0]).parent.name or "dataset",
    )
    _report(records, out)
    return 0
