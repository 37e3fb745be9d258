"""The ``mae-domains`` command line: pretrain, inspect adapters, compute statistics, reconstruct,
embed, evaluate, export and the built-in demo. Errors name the file or key at fault, without a
traceback (``--debug`` shows one)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _user_errors() -> tuple[type[BaseException], ...]:
    from mae_domains.config import ConfigError
    from mae_domains.data.sample import BadSampleError
    from mae_domains.engine.trainer import TrainingStopped
    from mae_domains.registry import AdapterNotFound
    from mae_domains.weights import CheckpointFormatError, UnsafeCheckpointError

    return (ConfigError, FileNotFoundError, AdapterNotFound, BadSampleError, TrainingStopped,
            UnsafeCheckpointError, CheckpointFormatError, ValueError, PermissionError)


def build_config(args: argparse.Namespace):
    """Adapter defaults <- --config YAML <- --adapter/--data <- key=value overrides."""
    from mae_domains.config import load_config

    overrides = list(getattr(args, "overrides", []) or [])
    if getattr(args, "adapter", None):
        overrides.insert(0, f"adapter={args.adapter}")
    if getattr(args, "data", None):
        overrides.insert(0, "data.sources=" + json.dumps([str(p) for p in args.data]))
    return load_config(args.config, overrides)


# ----- subcommands ------------------------------------------------------------------------------
def cmd_adapters(args: argparse.Namespace) -> int:
    from mae_domains.registry import discover_adapters

    adapters = discover_adapters()
    if not adapters:
        print("no adapters installed")
        return 1
    width = max(len(n) for n in adapters)
    for name, cls in sorted(adapters.items()):
        print(f"{name:<{width}}  api {cls.api_version}  {cls.summary}")
    return 0


def cmd_check_adapter(args: argparse.Namespace) -> int:
    from mae_domains.testing import check_adapter

    report = check_adapter(args.name)
    print(report.render())
    return 0 if report.passed else 1


def cmd_pretrain(args: argparse.Namespace) -> int:
    from mae_domains.engine import pretrain

    if args.resume:
        from mae_domains.config import load_config

        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{run_dir}: cannot resume, no config.yaml (is it a run directory?)")
        config = load_config(run_dir / "config.yaml", list(args.overrides or []))
    else:
        config = build_config(args)
        if not config.data.sources:
            raise ValueError("no data given: pass --data PATH (files, folders or globs) or set data.sources")
        run_dir = Path(args.out or Path("runs") / config.adapter.replace(".", "_"))
    result = pretrain(config, run_dir, resume=bool(args.resume))
    print(f"finished {result.steps} steps, loss {result.final_loss:.4f}; skipped files: {result.skipped}")
    print(f"run directory: {run_dir.resolve()}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from mae_domains.registry import get_adapter

    config = build_config(args)
    adapter = get_adapter(config.adapter, config.data.options).bind(config)
    refs = adapter.discover(config.data.sources)
    stats = adapter.compute_stats(refs, args.max_samples or config.data.stats_samples, config.engine.seed)
    text = json.dumps(stats.as_dict(), indent=2)
    if args.out:
        Path(args.out).write_text(text)
        print(f"statistics of {stats.count} samples written to {args.out}")
    else:
        print(text)
    return 0


def _eval_loader(run, sources: Sequence[str], batch_size: int, num_workers: int):
    from torch.utils.data import DataLoader

    from mae_domains.data.dataset import ArchiveDataset, collate_items

    refs = run.adapter.discover(sources)
    dataset = ArchiveDataset(run.adapter, refs, run.stats, train=False, seed=run.config.engine.seed)
    return refs, DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_items)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import torch

    from mae_domains.device import select_device
    from mae_domains.runs import load_run

    device = select_device(args.device)
    run = load_run(args.run, device)
    sources = args.data or run.config.data.sources
    _, loader = _eval_loader(run, sources, args.count, 0)
    batch = next(iter(loader))
    with torch.no_grad():
        output = run.model(**run.adapter.model_inputs(batch, device))
    out = Path(args.out or Path(args.run) / "figures" / "reconstruction.png")
    run.adapter.render_reconstruction(run.model, batch, output, out)
    print(f"reconstruction figure: {out.resolve()} (masked loss {output.loss.item():.4f})")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from mae_domains.device import select_device
    from mae_domains.runs import load_run

    device = select_device(args.device)
    run = load_run(args.run, device)
    _, loader = _eval_loader(run, args.data, args.batch_size, args.num_workers)
    ids, chunks = [], []
    with torch.no_grad():
        for batch in loader:
            chunks.append(run.adapter.embed(run.model, batch, device, args.pool).float().cpu().numpy())
            ids.extend(batch["sample_id"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, embeddings=np.concatenate(chunks), sample_ids=np.asarray(ids, dtype=str))
    print(f"{len(ids)} embeddings of width {chunks[0].shape[1]} written to {out.resolve()}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mae_domains.export import export_run

    paths = export_run(args.run, args.out)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mae_domains.evaluation.cli_support import evaluate_command

    return evaluate_command(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from mae_domains.config import load_config
    from mae_domains.demo import build_sample_archive
    from mae_domains.engine import pretrain

    out = Path(args.out)
    archive = build_sample_archive(out / "sample_archive")
    config = load_config(CONFIG_DIR / "demo.yaml" if args.config is None else args.config,
                         [f"data.sources={json.dumps([str(archive)])}"] + list(args.overrides or []))
    run_dir = out / "run"
    print(f"demo: pretraining adapter '{config.adapter}' ({config.model.preset}) on {archive} "
          f"for {config.engine.max_steps} steps")
    result = pretrain(config, run_dir)
    figures = sorted((run_dir / "figures").glob("*.png"))
    print(f"done: {result.steps} steps, final loss {result.final_loss:.4f}")
    print(f"  checkpoint:      {result.checkpoint.resolve()}")
    print(f"  metrics:         {(run_dir / 'metrics.csv').resolve()}")
    if figures:
        print(f"  reconstructions: {figures[-1].resolve()} ({len(figures)} figures)")
    return 0


# ----- parser -----------------------------------------------------------------------------------
def _add_run_options(p: argparse.ArgumentParser, need_data: bool = False) -> None:
    p.add_argument("--adapter", help="registered adapter name (see `mae-domains adapters`)")
    p.add_argument("--data", nargs="+", required=need_data, metavar="PATH", help="files, folders or globs")
    p.add_argument("--config", help="YAML recipe (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. model.preset=tiny")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mae-domains", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("adapters", help="list installed adapters").set_defaults(func=cmd_adapters)
    p = sub.add_parser("check-adapter", help="run the conformance kit on an adapter")
    p.add_argument("name")
    p.set_defaults(func=cmd_check_adapter)

    p = sub.add_parser("pretrain", help="pretrain an MAE on an archive")
    _add_run_options(p)
    p.add_argument("--out", help="run directory (default runs/<adapter>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly where it stopped")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("stats", help="per-channel normalization statistics of an archive")
    _add_run_options(p, need_data=True)
    p.add_argument("--out", help="write JSON here instead of printing")
    p.add_argument("--max-samples", type=int)
    p.set_defaults(func=cmd_stats)

    for name, func, text in (("reconstruct", cmd_reconstruct, "render input / masked / reconstruction"),
                             ("embed", cmd_embed, "embed an archive into an .npz of embeddings and sample ids")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--run", required=True, help="run directory")
        p.add_argument("--data", nargs="+", required=name == "embed", metavar="PATH")
        p.add_argument("--out", required=name == "embed")
        p.add_argument("--device", default="auto")
        if name == "reconstruct":
            p.add_argument("--count", type=int, default=4)
        else:
            p.add_argument("--batch-size", type=int, default=64)
            p.add_argument("--num-workers", type=int, default=0)
            p.add_argument("--pool", default="cls", choices=["cls", "avg"])
        p.set_defaults(func=func)

    p = sub.add_parser("evaluate", help="downstream protocol (kNN, linear probe, fine-tune) or a benchmark file")
    p.add_argument("--run", help="run directory whose encoder is evaluated")
    p.add_argument("--train", nargs="+", metavar="PATH", help="labelled training archive (class_name/*)")
    p.add_argument("--test", nargs="+", metavar="PATH", help="labelled test archive")
    p.add_argument("--protocol", default="knn", help="knn, linear_probe or finetune")
    p.add_argument("--benchmark", help="YAML benchmark file listing several evaluations")
    p.add_argument("--out", default="results", help="folder for results.jsonl / .csv / .md and plots")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="encoder as safetensors + JSON config (+ statistics, model card)")
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="pretrain on the built-in sample archive (a few minutes on CPU)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--config", help="recipe to use instead of configs/demo.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=cmd_demo)
    return parser


OVERRIDE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*=")


def split_overrides(args: argparse.Namespace) -> None:
    """``--data a b key=value``: argparse hands the overrides to --data; move them back."""
    data = getattr(args, "data", None)
    if data:
        args.data = [d for d in data if not OVERRIDE_PATTERN.match(d)]
        moved = [d for d in data if OVERRIDE_PATTERN.match(d)]
        args.overrides = moved + list(getattr(args, "overrides", []) or [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    split_overrides(args)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.debug:
        return int(args.func(args) or 0)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _user_errors() as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
