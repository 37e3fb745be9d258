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

from mae_domains import log_names

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# Errors whose message says what is wrong and where: printed in one line, exit code 2 (with ValueError, and
# OSError for a full disk, a missing file and a folder without permission), as (module, class name).
USER_ERRORS = (("mae_domains.config", "ConfigError"), ("mae_domains.registry", "AdapterNotFound"),
               ("mae_domains.data.sample", "BadSampleError"), ("mae_domains.engine.errors", "TrainingStopped"),
               ("mae_domains.runs.folder", "RunFolderError"), ("mae_domains.runs.lock", "RunLocked"),
               ("mae_domains.weights", "UnsafeCheckpointError"), ("mae_domains.weights", "CheckpointFormatError"))


def _user_errors() -> tuple[type[BaseException], ...]:
    """The user-error classes of the modules loaded so far: an error of a module that was never imported
    cannot have been raised, so a config error is reported without importing torch."""
    loaded = [getattr(sys.modules[module], name) for module, name in USER_ERRORS if module in sys.modules]
    return (*loaded, ValueError, OSError)


def _one_line(err: BaseException) -> str:
    """The error's message on one line (a message is never a traceback)."""
    message = str(err.args[0] if isinstance(err, KeyError) and err.args else err)
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in message:
        message = f"{err.filename}: {message}"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if "Traceback (most recent call last)" in message:  # re-raised from a loader worker: its last line
        lines = lines[-1:]
    return " ".join(lines) or type(err).__name__


def config_overrides(args: argparse.Namespace) -> list[str]:
    """--adapter, --data, --device and --batch-size as overrides, before the key=value ones."""
    overrides = list(getattr(args, "overrides", []) or [])
    if getattr(args, "batch_size", None) is not None:
        overrides.insert(0, f"engine.batch_size={args.batch_size}")
    if getattr(args, "device", None):
        overrides.insert(0, f"engine.device={args.device}")
    if getattr(args, "adapter", None):
        overrides.insert(0, f"adapter={args.adapter}")
    if getattr(args, "data", None):
        overrides.insert(0, "data.sources=" + json.dumps([str(p) for p in args.data]))
    return overrides


def build_config(args: argparse.Namespace, require_adapter: bool = False):
    """Adapter defaults <- --config YAML or recipe name <- --adapter/--data <- key=value overrides. With
    ``require_adapter``, a config that names no adapter is refused instead of training the ``image`` model."""
    from mae_domains.config import ConfigError, config_from_dict, config_file, read_config_data

    data = read_config_data(args.config, config_overrides(args))
    if require_adapter and "adapter" not in data:
        raise ConfigError("no adapter given: pass --adapter NAME (`mae-domains adapters` lists them) or use a "
                          "--config that sets adapter:")
    return config_from_dict(data, "" if args.config is None else str(config_file(args.config)))


# ----- subcommands ------------------------------------------------------------------------------
def cmd_adapters(args: argparse.Namespace) -> int:
    if args.name:
        from mae_domains.adapter_listing import load_adapter_class

        print(describe_adapter(load_adapter_class(args.name)))
        return 0
    from mae_domains.adapter_listing import list_adapters

    adapters = list_adapters()
    if not adapters:
        print("no adapters installed")
        return 1
    width = max(len(a.name) for a in adapters)
    print("adapters:")
    for entry in adapters:
        print(f"  {entry.name:<{width}}  api {entry.api_version}  {entry.summary}")
    print_plugin_entry_points()
    print("options, defaults and what they mean: mae-domains adapters NAME; protocols and converters "
          "described: mae-domains plugins")
    return 0


def print_plugin_entry_points() -> None:
    """Protocols and converters by their entry points, read from package metadata (nothing imported)."""
    from importlib.metadata import entry_points

    from mae_domains.entry_point_groups import CONVERTERS, PROTOCOLS

    for group, title in ((PROTOCOLS, "protocols:"), (CONVERTERS, "converters (pretrain --init FAMILY:PATH):")):
        found = sorted({(ep.name, ep.value) for ep in entry_points(group=group)})
        width = max((len(name) for name, _ in found), default=0)
        print(title)
        for name, value in found:
            print(f"  {name:<{width}}  [{value}]")
        if not found:
            print("  none registered")


def cmd_plugins(args: argparse.Namespace) -> int:
    from mae_domains.plugin_listing import render_plugins
    from mae_domains.registry import discover_adapters

    print(render_plugins())
    return 0 if discover_adapters() else 1


def describe_adapter(cls: type) -> str:
    """An adapter's summary, files, masking recipe, protocols and options (``data.options.*``) with their
    defaults and meanings."""
    from mae_domains.config import RECIPES_DIR, recipe_names
    import yaml

    recipes = [n for n in recipe_names()
               if (yaml.safe_load((RECIPES_DIR / f"{n}.yaml").read_text(encoding="utf-8")) or {}).get("adapter") == cls.name]
    lines = [f"{cls.name} (api {cls.api_version}): {cls.summary}",
             f"files: {', '.join(cls.file_patterns)}",
             f"mask: ratio {cls.default_mask_ratio}, {cls.default_mask_strategy} (mask.ratio, mask.strategy)",
             f"protocols: {', '.join(cls.evaluation_protocols)}",
             f"recipes: {', '.join(recipes) or 'none'}",
             "options (data.options.NAME=VALUE):"]
    meanings = getattr(cls, "option_help", {}) or {}
    width = max((len(k) for k in cls.option_defaults), default=0)
    for key, default in cls.option_defaults.items():
        meaning = meanings.get(key, "(not described by the adapter)")
        lines.append(f"  {key:<{width}}  {json.dumps(default)}\n  {'':<{width}}    {meaning}")
    if not cls.option_defaults:
        lines.append("  none")
    return "\n".join(lines)


def cmd_recipes(args: argparse.Namespace) -> int:
    from mae_domains.config import recipe_listing

    print(recipe_listing())
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    import yaml

    config = build_config(args)
    print(f"# resolved config{'' if args.config is None else ' of ' + str(args.config)}; a mask value left null "
          "is the adapter's recipe")
    print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    return 0


def cmd_check_adapter(args: argparse.Namespace) -> int:
    from mae_domains.testing import check_adapter

    report = check_adapter(args.name)
    print(report.render())
    return 0 if report.passed else 1


def cmd_pretrain(args: argparse.Namespace) -> int:
    if args.resume:
        from mae_domains.runs.resume import resume_config

        if args.init:
            raise ValueError("--init cannot be combined with --resume: a resumed run continues from its own checkpoint")
        if args.config:
            raise ValueError("--config cannot be combined with --resume: the run's config is in its checkpoint; "
                             "give key=value overrides for what may change")
        run_dir = Path(args.resume)
        config = resume_config(run_dir, config_overrides(args))
    else:
        config = build_config(args, require_adapter=True)
        if not config.data.sources:
            raise ValueError("no data given: pass --data PATH (files, folders or globs) or set data.sources")
        if args.init:
            config.model.init = str(args.init)
        run_dir = Path(args.out or Path("runs") / config.adapter.replace(".", "_"))
    from mae_domains.engine import pretrain  # torch and the adapters load once the config is known good

    result = pretrain(config, run_dir, resume=bool(args.resume), overwrite=args.overwrite)
    if result.stopped_by:
        return report_stop(result)
    print(f"finished {result.steps} steps, loss {result.final_loss:.4f}; skipped samples: {result.skipped}")
    print(f"run directory: {run_dir.resolve()}")
    return 0


def report_stop(result) -> int:
    """Say that a run stopped on a signal, why and how to continue; the exit code 128 + the signal."""
    from mae_domains.engine.preemption import stop_exit_code, stopped_summary

    print(stopped_summary(result.stopped_by, result.steps, result.checkpoint_step, result.total_steps,
                          result.run_dir), file=sys.stderr)
    return stop_exit_code("SIGINT" if "Ctrl-C" in result.stopped_by else result.stopped_by)


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
        print(f"skipped {log_names.printable(entry.source)}: {log_names.printable(entry.reason)}", file=sys.stderr)
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
    left_out = f"{result.left_out} file(s) left out; " if result.left_out else ""
    print(f"{len(result.ids)} embeddings of width {result.embeddings.shape[1]} written to "
          f"{paths['embeddings'].resolve()} ({len(result.skipped) - result.left_out} of {result.total} samples "
          f"skipped; {left_out}ids relative to {result.root})")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from mae_domains.shards import prepare_archive

    config = build_config(args)
    summary = prepare_archive(config, args.out, workers=args.workers, part_size=args.part_size,
                              compression=args.compression, progress=not args.quiet, dtype=args.dtype,
                              resolution=args.resolution)
    print(f"{summary.samples} samples ({summary.bad} unreadable, stored as such) in {args.out}: "
          f"{summary.shard_bytes / 2**20:.1f} MiB of shards ({summary.compression}) for "
          f"{summary.decoded_bytes / 2**20:.1f} MiB decoded; {summary.parts_written} part(s) written, "
          f"{summary.parts_kept} kept from an earlier run, {summary.seconds:.1f} s")
    print(f"train with: mae-domains pretrain --adapter {config.adapter} --data {args.out}")
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
    config = load_config(args.config or "demo", [f"data.sources={json.dumps([str(archive)])}"]
                         + list(args.overrides or []))
    run_dir = out / "run"
    print(f"demo: pretraining adapter '{config.adapter}' ({config.model.preset}) on {archive} "
          f"for {config.engine.max_steps} steps")
    result = pretrain(config, run_dir, overwrite=True)  # the demo's own folder: each demo starts afresh
    if result.stopped_by:
        return report_stop(result)
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
    _add_config_option(p)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. model.preset=tiny")


def _add_device_and_batch(p: argparse.ArgumentParser, device_help: str, batch_help: str) -> None:
    """``--device`` and ``--batch-size``, spelled alike in every command that computes."""
    p.add_argument("--device", default=None, help=f"auto, cpu, cuda, cuda:N or mps ({device_help})")
    p.add_argument("--batch-size", type=int, metavar="N", help=batch_help)


def _add_settings(p: argparse.ArgumentParser, help: str) -> None:
    """Settings as ``KEY=VALUE`` after the options, as overrides are given to every command; ``--set`` is
    the earlier spelling, kept as a deprecated alias."""
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=help)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="deprecated spelling of KEY=VALUE")


def _add_config_option(p: argparse.ArgumentParser, help: str = "") -> None:
    p.add_argument("--config", "--recipe", dest="config", metavar="RECIPE",
                   help=help or "a shipped recipe by name (`mae-domains recipes`), e.g. medical_xray_vit_base, "
                                "or a YAML file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mae-domains", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Subcommand)

    p = sub.add_parser("adapters", help="list installed adapters, or one adapter's options")
    p.add_argument("name", nargs="?", metavar="NAME", help="an adapter: print its options with defaults and meaning")
    p.set_defaults(func=cmd_adapters)
    sub.add_parser("plugins", help="adapters, evaluation protocols and checkpoint converters, described (imports "
                                   "every plugin)").set_defaults(func=cmd_plugins)
    sub.add_parser("recipes", help="list the shipped recipes (--config NAME)").set_defaults(func=cmd_recipes)
    p = sub.add_parser("config", help="show the resolved config of a recipe and overrides")
    config_sub = p.add_subparsers(dest="config_command", required=True, parser_class=_Subcommand)
    p = config_sub.add_parser("show", help="print the resolved config as YAML (recipe <- --adapter/--data <- "
                                           "key=value overrides), without reading data")
    _add_run_options(p)
    p.set_defaults(func=cmd_config_show)
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
    _add_device_and_batch(p, "engine.device; default: the config's", "samples per step and process (engine.batch_size)")
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

    p = sub.add_parser("prepare", help="decode an archive once into shards that pretrain/embed/evaluate read",
                       description="Read every sample of an archive with the adapter (its options and "
                                   "model.img_size as for training) and store what it returns (arrays, validity, "
                                   "metadata) in MosaicML Streaming MDS shards, in parallel; run it again to "
                                   "resume after an interruption. Then pass the folder (or its object-store URL) "
                                   "to --data.")
    _add_run_options(p, need_data=True)
    p.add_argument("--out", required=True, metavar="SHARDS", help="shard folder to write (resumed if it exists)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    p.add_argument("--part-size", type=int, default=256, help="samples per part (the unit of resumption)")
    p.add_argument("--compression", choices=("zstd", "none"), default="zstd",
                   help="shard compression (zstd: smaller downloads; a reader keeps a decompressed copy)")
    p.add_argument("--dtype", choices=("as-read", "float16", "uint16", "uint8"), default="as-read",
                   help="pixels as stored: as read (exact), float16, or [0, 1] pixels as 8- or 16-bit steps (exact "
                        "for 8- or 16-bit sources; other values are an error)")
    p.add_argument("--resolution", type=int, default=None, metavar="PIXELS",
                   help="store whole images (image, medical.xray) with their shorter side at most PIXELS, at least "
                        "model.img_size (default: as read)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("inspect", help="what an adapter reads from one sample: sample.npy, sample.json, preview.png")
    p.add_argument("--adapter", required=True, help="registered adapter name (see `mae-domains adapters`)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for sample.npy, sample.json, preview.png")
    p.add_argument("--index", type=int, default=0, metavar="K", help="which of the samples PATH yields (from 0)")
    _add_config_option(p)
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
    p.add_argument("--batch-size", "--count", dest="count", type=int, default=4, metavar="N",
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
    _add_config_option(p, "run config (a recipe name or YAML file) of the model for published weights given to --run")
    p.add_argument("--train", nargs="+", metavar="PATH",
                   help="labelled training archive: class folders (class_name/*) or a label CSV (not needed by anomaly)")
    p.add_argument("--test", nargs="+", metavar="PATH", help="labelled test archive: class folders or a label CSV")
    p.add_argument("--manifest", metavar="CSV", help="one label CSV whose split column says train or test "
                                                      "(instead of --train/--test)")
    p.add_argument("--protocol", default=None,
                   help="a registered protocol: knn, linear_probe, finetune, multilabel_map, anomaly "
                        "(reconstruction-error AUROC, normal vs abnormal), or one an adapter adds "
                        "(default: the run's eval.protocols)")
    _add_settings(p, "protocol settings, e.g. k=10 epochs=5 (they win over the run's eval section)")
    p.add_argument("--benchmark", help="YAML benchmark file listing several evaluations")
    p.add_argument("--out", default=None,
                   help="folder for results.jsonl / .csv / .md and plots (default: results, or the benchmark "
                        "file's output: key); a folder with earlier results gains the new records (a repeated "
                        "evaluation replaces its earlier records) and its tables cover all of them")
    _add_device_and_batch(p, "default: auto", "samples per forward pass and training batch (setting batch_size)")
    p.add_argument("--seed", type=int, default=0, help="seed of the protocol (fine-tuning, probe, splits)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("segment", help="land-cover segmentation of whole georeferenced scenes into GeoTIFFs",
                       description="Classify every pixel of a scene tile by tile (centre-crop stitching) and write "
                                   "a uint8 GeoTIFF of class ids (nodata 255) on the scene's CRS and transform. "
                                   "MODEL: a segmenter folder from an earlier --train, or a run folder with "
                                   "--train PAIRS.csv (columns image,label: label rasters on the image's grid).")
    p.add_argument("--run", metavar="MODEL", help="trained segmenter folder, or run folder/checkpoint with --train "
                                                 "(given first among the SCENEs: the earlier spelling, deprecated)")
    p.add_argument("scenes", nargs="*", metavar="SCENE", help="GeoTIFF/COG, band-file folder or STAC item")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="output GeoTIFF (a folder when several scenes are given)")
    p.add_argument("--train", metavar="CSV", help="image,label pairs to fine-tune a segmenter on first")
    p.add_argument("--save", metavar="DIR", help="where the fine-tuned segmenter goes (default: OUT.segmenter)")
    p.add_argument("--truth", action="append", metavar="TRUTH.tif",
                   help="truth class raster on the scene's grid (one per scene, in order): prints per-class IoU "
                        "and mIoU with a spatial-block bootstrap interval, writes them to OUT.scores.json")
    _add_settings(p, "settings: steps, lr, batch_size, tile (px, default model.img_size), overlap (px, default "
                     "tile/4), batch_tiles, label_nodata (255), freeze_encoder; scoring: bootstrap_block (px, "
                     "32), bootstrap_resamples (auto = 1000), confidence (0.95)")
    _add_device_and_batch(p, "default: auto", "fine-tuning batch (setting batch_size)")
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
    _add_config_option(p, "recipe to use instead of the demo recipe (a name or YAML file)")
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


def unify_settings(args: argparse.Namespace) -> None:
    """``evaluate`` and ``segment``: KEY=VALUE settings (and ``--batch-size``) into ``args.set``, the model
    of ``segment`` into ``args.model``; the earlier spellings (``--set``, ``segment MODEL SCENE``) still work
    and say so."""
    if args.command not in ("evaluate", "segment"):
        return
    if args.set:
        print("note: --set is deprecated; give settings as KEY=VALUE after the options", file=sys.stderr)
    if args.command == "segment":
        args.overrides = [s for s in args.scenes if OVERRIDE_PATTERN.match(s)] + list(args.overrides or [])
        args.scenes = [s for s in args.scenes if not OVERRIDE_PATTERN.match(s)]
        if args.run is None:
            if not args.scenes:
                raise SystemExit("mae-domains segment: error: give the model with --run MODEL")
            print("note: the model as the first SCENE is deprecated; give it with --run MODEL", file=sys.stderr)
            args.scenes = list(args.scenes)
            args.run = args.scenes.pop(0)
        args.model = args.run
    args.set = list(args.set) + list(args.overrides or [])
    if args.batch_size is not None:
        args.set.append(f"batch_size={args.batch_size}")
    args.device = args.device or "auto"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    split_overrides(args)
    unify_settings(args)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    log_names.install()  # a file name with a line break cannot forge a log line
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
