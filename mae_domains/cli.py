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
    """Errors whose message says what is wrong and where: printed in one line, exit code 2. ``OSError``
    covers a full disk, a missing file and a folder without permission."""
    from mae_domains.config import ConfigError
    from mae_domains.data.sample import BadSampleError
    from mae_domains.engine.errors import TrainingStopped
    from mae_domains.registry import AdapterNotFound
    from mae_domains.runs.folder import RunFolderError
    from mae_domains.runs.lock import RunLocked
    from mae_domains.weights import CheckpointFormatError, UnsafeCheckpointError

    return (ConfigError, AdapterNotFound, BadSampleError, TrainingStopped, RunFolderError, RunLocked,
            UnsafeCheckpointError, CheckpointFormatError, ValueError, OSError)


def _one_line(err: BaseException) -> str:
    """The error's message on one line (a message is never a traceback)."""
    message = str(err.args[0] if isinstance(err, KeyError) and err.args else err)
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in message:
        message = f"{err.filename}: {message}"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if "Traceback (most recent call last)" in message:  # re-raised from a loader worker: its last line
        lines = lines[-1:]
    return " ".join(lines) or type(err).__name__


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
    from mae_domains.plugin_listing import render_plugins
    from mae_domains.registry import discover_adapters

    print(render_plugins())
    return 0 if discover_adapters() else 1


def cmd_check_adapter(args: argparse.Namespace) -> int:
    from mae_domains.testing import check_adapter

    report = check_adapter(args.name)
    print(report.render())
    return 0 if report.passed else 1


def cmd_pretrain(args: argparse.Namespace) -> int:
    from mae_domains.engine import pretrain
    from mae_domains.engine.preemption import PREEMPTED_EXIT_CODE

    if args.resume:
        from mae_domains.runs.resume import resume_config

        if args.init:
            raise ValueError("--init cannot be combined with --resume: a resumed run continues from its own checkpoint")
        if args.config:
            raise ValueError("--config cannot be combined with --resume: the run's config is in its checkpoint; "
                             "give key=value overrides for what may change")
        run_dir = Path(args.resume)
        overrides = list(args.overrides or [])
        if args.adapter:
            overrides.insert(0, f"adapter={args.adapter}")
        if args.data:
            overrides.insert(0, "data.sources=" + json.dumps([str(p) for p in args.data]))
        config = resume_config(run_dir, overrides)
    else:
        config = build_config(args)
        if not config.data.sources:
            raise ValueError("no data given: pass --data PATH (files, folders or globs) or set data.sources")
        if args.init:
            config.model.init = str(args.init)
        run_dir = Path(args.out or Path("runs") / config.adapter.replace(".", "_"))
    result = pretrain(config, run_dir, resume=bool(args.resume), overwrite=args.overwrite)
    if result.stopped_by:
        print(f"stopped by {result.stopped_by} after step {result.steps}, checkpoint written; continue with: "
              f"mae-domains pretrain --resume {run_dir}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    print(f"finished {result.steps} steps, loss {result.final_loss:.4f}; skipped samples: {result.skipped}")
    print(f"run directory: {run_dir.resolve()}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from mae_domains.registry import discover_refs, get_adapter

    config = build_config(args)
    adapter = get_adapter(config.adapter, config.data.options).bind(config)
    refs = discover_refs(adapter, config.data.sources)
    stats = adapter.compute_stats(refs, args.max_samples or config.data.stats_samples, config.engine.seed)
    text = json.dumps(stats.as_dict(), indent=2)
    if args.out:
        Path(args.out).write_text(text)
        print(f"statistics of {stats.count} samples written to {args.out}")
    else:
        print(text)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from mae_domains.inspection import inspect_sample
    from mae_domains.registry import get_adapter

    config = build_config(args)
    adapter = get_adapter(config.adapter, config.data.options).bind(config)
    result = inspect_sample(adapter, args.path, args.out, args.index)
    print(result.summary())
    for path in (result.array, result.report_path, result.preview):
        print(f"  {path.resolve()}")
    return 0


def _report_skipped(skipped, csv_path: Path | None, shown: int = 20) -> None:
    """List skipped samples on stderr (the first ``shown``; all of them are in ``csv_path``)."""
    for entry in skipped[:shown]:
        print(f"skipped {entry.source}: {entry.reason}", file=sys.stderr)
    if len(skipped) > shown:
        print(f"... and {len(skipped) - shown} more", file=sys.stderr)
    if skipped and csv_path is not None:
        print(f"{len(skipped)} skipped sample(s) listed in {csv_path.resolve()}", file=sys.stderr)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import torch

    from mae_domains.device import select_device
    from mae_domains.runs import FIGURES_DIR, load_model
    from mae_domains.runs.embedding import NoReadableSamples
    from mae_domains.runs.reconstruction import reconstruction_batch

    device = select_device(args.device)
    loaded = load_model(args.run, device)
    if not loaded.has_decoder:
        raise ValueError(f"{args.run}: holds an encoder only ({loaded.kind}); reconstructions need a run directory")
    sources = args.data or loaded.config.data.sources
    if not sources:
        raise ValueError(f"{args.run}: its config names no data; pass --data PATH")
    try:
        batch, skipped = reconstruction_batch(loaded, sources, args.count)
    except NoReadableSamples as err:
        _report_skipped(err.skipped, None)
        raise
    _report_skipped(skipped, None)
    with torch.no_grad():
        output = loaded.model(**loaded.adapter.model_inputs(batch, device))
    out = Path(args.out or Path(args.run) / FIGURES_DIR / "reconstruction.png")
    loaded.adapter.render_reconstruction(loaded.model, batch, output, out)
    print(f"reconstruction figure: {out.resolve()} (masked loss {output.loss.item():.4f}"
          + (f"; {len(skipped)} unreadable sample(s) skipped" if skipped else "") + ")")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from mae_domains.device import select_device
    from mae_domains.runs import load_model
    from mae_domains.runs.embedding import NoReadableSamples, embed_archive, write_embeddings, write_skipped

    device = select_device(args.device)
    loaded = load_model(args.run, device)
    try:
        result = embed_archive(loaded, args.data, device, batch_size=args.batch_size, num_workers=args.num_workers,
                               pool=args.pool)
    except NoReadableSamples as err:
        _report_skipped(err.skipped, write_skipped(err.skipped, args.out))
        raise
    if args.aggregate != "none":
        from mae_domains.runs.aggregation import aggregate

        samples = len(result.ids)
        result = aggregate(result, args.aggregate)
        print(f"{samples} sample embeddings averaged into {len(result.ids)} {args.aggregate} embeddings")
    paths = write_embeddings(result, args.out)
    _report_skipped(result.skipped, paths.get("skipped"))
    print(f"{len(result.ids)} embeddings of width {result.embeddings.shape[1]} written to "
          f"{paths['embeddings'].resolve()} ({len(result.skipped)} of {result.total} samples skipped; "
          f"ids relative to {result.root})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mae_domains.runs import export_run

    paths = export_run(args.run, args.out, layout=args.format, license=args.license)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mae_domains.evaluation.cli_support import evaluate_command

    return evaluate_command(args)


def cmd_segment(args: argparse.Namespace) -> int:
    from mae_domains.evaluation.scene_segmentation import segment_command

    return segment_command(args)


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
    result = pretrain(config, run_dir, overwrite=True)  # the demo's own folder: each demo starts afresh
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
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Subcommand)

    sub.add_parser("adapters", help="list installed adapters, evaluation protocols and checkpoint converters").set_defaults(func=cmd_adapters)
    p = sub.add_parser("check-adapter", help="run the conformance kit on an adapter")
    p.add_argument("name")
    p.set_defaults(func=cmd_check_adapter)

    p = sub.add_parser("pretrain", help="pretrain an MAE on an archive")
    _add_run_options(p)
    p.add_argument("--out", help="run directory (default runs/<adapter>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly where it stopped (key=value "
                   "overrides may change only how long it runs, how it reports and where it computes)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (refused without this flag)")
    p.add_argument("--init", metavar="PATH_OR_NAME",
                   help="start from these weights: a run folder, checkpoint or export of ours, or a published "
                        "checkpoint as FAMILY:PATH (families: mae, satmae_group, satmae_temporal, scale_mae, prithvi, "
                        "ca_mae, chest_xray_mae, monai_vit) or PATH (family found from its keys)")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("stats", help="per-channel normalization statistics of an archive")
    _add_run_options(p, need_data=True)
    p.add_argument("--out", help="write JSON here instead of printing")
    p.add_argument("--max-samples", type=int)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("inspect", help="what an adapter reads from one sample: sample.npy, sample.json, preview.png")
    p.add_argument("--adapter", required=True, help="registered adapter name (see `mae-domains adapters`)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for sample.npy, sample.json, preview.png")
    p.add_argument("--index", type=int, default=0, metavar="K", help="which of the samples PATH yields (from 0)")
    p.add_argument("--config", help="YAML recipe (see configs/)")
    p.add_argument("path", metavar="PATH", help="one sample as --data finds it: a file, a scene or series folder")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. model.in_chans=1")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("reconstruct", help="render input / masked / reconstruction of a few samples (PNG)")
    p.add_argument("--run", required=True, metavar="DIR",
                   help="run directory (or its checkpoint.pt): reconstruction needs the trained decoder, which "
                        "an export does not hold")
    p.add_argument("--data", nargs="+", metavar="PATH",
                   help="files, folders or globs to draw the samples from (default: the run's data.sources)")
    p.add_argument("--out", metavar="PNG", help="figure path (default: DIR/figures/reconstruction.png)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--count", type=int, default=4, metavar="N",
                   help="samples shown, one row each (default: 4); unreadable files are skipped and listed")
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("embed", help="embed an archive into an .npz of embeddings, sample ids and positions")
    p.add_argument("--run", required=True, metavar="PATH",
                   help="run directory, checkpoint.pt, export folder or encoder.safetensors")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="files, folders or globs to embed; sample ids are paths relative to their common folder")
    p.add_argument("--out", required=True, metavar="NPZ",
                   help="output .npz (embeddings, sample_ids, sources, position metadata such as crs, bounds, "
                        "window; skipped files); skipped files also go to <out>.skipped.csv")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="samples per forward pass (default: 64)")
    p.add_argument("--num-workers", type=int, default=0, metavar="N",
                   help="data loader worker processes (default: 0, read in the main process)")
    p.add_argument("--pool", default="cls", choices=["cls", "avg"],
                   help="one vector per sample: the CLS token (cls, default) or the mean of the patch tokens (avg)")
    p.add_argument("--aggregate", default="none", choices=["none", "image", "well"],
                   help="average the embeddings of crops and chips per image (file, or plate/well/site) or per "
                        "well (plate/well ids of plate archives), with a count column (default: none)")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("evaluate", help="downstream protocol (kNN, linear probe, fine-tune, anomaly) or a benchmark file",
                       description="Evaluate a run on labelled data. Examples: --run RUN --train DIR --test DIR "
                                   "--protocol knn; --run RUN --manifest labels.csv --protocol finetune (a CSV "
                                   "with a split column, e.g. image,labels,split with labels A|B|C); --run RUN "
                                   "--protocol anomaly --test DIR (folders normal/ and abnormal/, or a CSV "
                                   "path,label with normal|abnormal; needs the run's checkpoint with its decoder).")
    p.add_argument("--run", help="run directory (or checkpoint) whose model is evaluated; or published weights as "
                                 "FAMILY:PATH or PATH, with --adapter (and --config for the model size)")
    p.add_argument("--adapter", help="adapter that builds the model for published weights given to --run")
    p.add_argument("--config", help="run config (YAML) of the model for published weights given to --run")
    p.add_argument("--train", nargs="+", metavar="PATH",
                   help="labelled training archive: class folders (class_name/*) or a label CSV (not needed by anomaly)")
    p.add_argument("--test", nargs="+", metavar="PATH", help="labelled test archive: class folders or a label CSV")
    p.add_argument("--manifest", metavar="CSV", help="one label CSV whose split column says train or test "
                                                      "(instead of --train/--test)")
    p.add_argument("--protocol", default=None,
                   help="a registered protocol: knn, linear_probe, finetune, multilabel_map, anomaly "
                        "(reconstruction-error AUROC, normal vs abnormal), or one an adapter adds "
                        "(default: the run's eval.protocols)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="protocol settings, e.g. k=10 epochs=5 (they win over the run's eval section)")
    p.add_argument("--benchmark", help="YAML benchmark file listing several evaluations")
    p.add_argument("--out", default=None,
                   help="folder for results.jsonl / .csv / .md and plots (default: results, or the benchmark "
                        "file's output: key)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=0, help="seed of the protocol (fine-tuning, probe, splits)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("segment", help="land-cover segmentation of whole georeferenced scenes into GeoTIFFs",
                       description="Classify every pixel of a scene tile by tile (centre-crop stitching) and write "
                                   "a uint8 GeoTIFF of class ids (nodata 255) on the scene's CRS and transform. "
                                   "MODEL: a segmenter folder from an earlier --train, or a run folder with "
                                   "--train PAIRS.csv (columns image,label: label rasters on the image's grid).")
    p.add_argument("model", metavar="MODEL", help="trained segmenter folder, or run folder/checkpoint with --train")
    p.add_argument("scenes", nargs="*", metavar="SCENE", help="GeoTIFF/COG, band-file folder or STAC item")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="output GeoTIFF (a folder when several scenes are given)")
    p.add_argument("--train", metavar="CSV", help="image,label pairs to fine-tune a segmenter on first")
    p.add_argument("--save", metavar="DIR", help="where the fine-tuned segmenter goes (default: OUT.segmenter)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="settings: steps, lr, batch_size, tile (px, default model.img_size), overlap (px, default "
                        "tile/4), batch_tiles, label_nodata (255), freeze_encoder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=0, help="seed of the fine-tuning")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("export", help="encoder as safetensors + JSON config (+ statistics, model card)")
    p.add_argument("--run", required=True, metavar="PATH",
                   help="run directory, checkpoint.pt, or an earlier export (folder or encoder.safetensors)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for encoder.safetensors, config.json (input contract, timm_model), stats.json "
                        "and MODEL_CARD.md")
    p.add_argument("--format", choices=("mae-domains", "hf"), default="mae-domains",
                   help="hf: a Hugging Face Hub model repository (model.safetensors, config.json with timm's "
                        "pretrained_cfg, README.md model card with YAML front matter); upload it as is")
    p.add_argument("--license", metavar="ID", help="license of the weights for the hf model card (an SPDX id such as "
                   "apache-2.0); without it the card says 'other' and asks you to set it")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="pretrain on the built-in sample archive (a few minutes on CPU)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--config", help="recipe to use instead of configs/demo.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=cmd_demo)
    return parser


OVERRIDE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*=")


class _Subcommand(argparse.ArgumentParser):
    """A subcommand's parser that also takes ``key=value`` overrides placed after options that follow a
    positional (``inspect PATH --out DIR key=value``), which plain argparse rejects as unrecognized."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if hasattr(namespace, "overrides"):
            namespace.overrides = list(namespace.overrides or []) + [a for a in extras if OVERRIDE_PATTERN.match(a)]
            extras = [a for a in extras if not OVERRIDE_PATTERN.match(a)]
        return namespace, extras


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
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: still one line, the traceback with --debug
        print(f"error: {type(err).__name__}: {_one_line(err)} (an internal error; rerun with --debug for the "
              "traceback and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
