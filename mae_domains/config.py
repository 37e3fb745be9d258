"""Typed run configuration: YAML recipes validated against dataclasses, dotted overrides.

Unknown keys are errors with a "did you mean"; every error names the file or key at fault.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml


class ConfigError(ValueError):
    """A configuration problem; the message names the file and key."""


def suggest(key: str, known: Mapping[str, Any] | list[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass
class ModelConfig:
    """The model builder's input (:func:`mae_domains.models.build_grid_mae_from_config`): encoder preset,
    patch and input size, decoder kind and size, which tokens are decoded and how the loss is taken."""

    preset: str = "base"
    patch_size: int = 16
    img_size: int = 224
    in_chans: int = 3
    decoder: str = "self"  # "self" (MAE) or "cross" (CrossMAE: queries attend to visible tokens only)
    cross_features: str = "mixed"  # cross decoder context: "mixed" (CrossMAE feature mapping) or "last" (final output)
    decoder_embed_dim: int | None = None  # None: the preset's decoder (see mae_domains.models.presets)
    decoder_depth: int | None = None
    decoder_num_heads: int | None = None
    query: str | float = "masked"  # "masked", "all", or a fraction of all tokens taken from the masked ones
    # (CrossMAE's kept_mask_ratio: decodes masked - int(N * (mask ratio - query)) tokens)
    norm_pix_loss: bool = True
    loss: str = "mse"  # "mse" or "l1"
    drop_path_rate: float = 0.0
    depth: int | None = None  # overrides the preset's encoder depth (smoke runs, tests)
    init: str | None = None  # initial weights of a new run: PATH or FAMILY:PATH (``pretrain --init``)


MASK_STRATEGIES = ("random", "consistent", "independent", "stratified")
MASK_NOISES = ("uniform", "red", "blue", "green", "purple")


@dataclass
class MaskConfig:
    """Masking: ``ratio`` and ``strategy`` default to the adapter's recipe (None = the recipe's value).
    ``strategy``: ``random`` over all tokens, or along ``axis`` (None = the adapter's axis, e.g. ``group`` or
    ``time``): ``consistent`` (one spatial mask for every slice), ``independent`` (SatMAE's: uniform over all
    slice x location tokens, so the kept count per slice varies) or ``stratified`` (an own mask per slice with
    the same kept count; what ``independent`` meant in 0.1.0). ``noise``: ``uniform`` (MAE) or a ColorMAE filtered
    noise colour; ColorMAE noise banks are cached under ``noise_cache`` (default: a user cache folder)."""

    ratio: float | None = None
    strategy: str | None = None
    axis: str | None = None
    noise: str = "uniform"
    noise_cache: str | None = None


@dataclass
class DataConfig:
    sources: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 2
    stats_samples: int = 256
    max_bad_fraction: float = 0.05
    pin_memory: bool = True
    max_pixels: int = 2**28  # a file whose decoded pixel count (H x W x planes) exceeds this is skipped
    # prepared shards: groups of consecutive shards, one slice of every global batch each; a rank of a job
    # whose process count divides it reads only its groups' shards (1: the order of the raw archive)
    shard_groups: int = 1


@dataclass
class OptimConfig:
    base_lr: float = 1.5e-4
    lr: float | None = None
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int | None = None  # warmup in optimizer steps, or
    warmup_epochs: float | None = None  # in epochs (converted with the run's steps per epoch); at most one
    min_lr: float = 0.0
    clip_grad: float | None = None
    accum_steps: int = 1
    query_lr_scale: bool = True  # CrossMAE: lr x model.query / mask ratio when a fraction is decoded (base_lr only)


@dataclass
class OnlineKnnSettings:
    """``engine.online_knn``: every ``every`` steps (0 = off) embed a small labelled set and log kNN top-1.
    ``train`` / ``test`` are labelled sources in the ``evaluate`` format (class folders, CSV label lists);
    without ``test`` the ``split`` column of the ``train`` lists divides them. Kept in memory: keep it small."""

    every: int = 0
    train: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    k: int = 20
    temperature: float = 0.07
    pool: str = "cls"
    batch_size: int = 64


@dataclass
class EngineConfig:
    batch_size: int = 64
    max_steps: int | None = None
    epochs: int | None = None
    checkpoint_every: int = 500
    log_every: int = 20
    figure_every: int | None = None  # None: a reconstruction figure every tenth of the run; 0: none
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    tensorboard: bool = False
    threads: int | None = None
    activation_checkpointing: bool = False  # recompute block activations in backward: less memory, ~1/3 more compute
    distributed: str = "ddp"  # under torchrun: "ddp" (replicated weights) or "fsdp" (FSDP2, sharded; ViT-L/H)
    compile: bool = False  # torch.compile the model (falls back to eager, with a warning, when it fails)
    retain_host_memory: bool = True  # glibc malloc keeps freed memory: steps reuse buffers, no page faults
    online_knn: OnlineKnnSettings = field(default_factory=OnlineKnnSettings)


POSITION_TABLES = ("fixed", "trained")
ERASING_MODES = ("const", "rand", "pixel")


@dataclass
class FinetuneSettings:
    """``eval.finetune``: the ``finetune`` protocol's settings a run picks; None leaves the protocol's (or the
    adapter's) default. Meanings in :class:`mae_domains.evaluation.finetune.FinetuneConfig`;
    ``configs/image_vit_base.yaml`` gives MAE's ViT-B recipe."""

    epochs: int | None = None
    base_lr: float | None = None
    min_lr: float | None = None
    warmup_epochs: float | None = None
    layer_decay: float | None = None
    weight_decay: float | None = None
    drop_path: float | None = None
    label_smoothing: float | None = None
    mixup: float | None = None  # mixup alpha (0 = off)
    cutmix: float | None = None  # cutmix alpha (0 = off)
    mixup_prob: float | None = None
    mixup_switch_prob: float | None = None
    erase_prob: float | None = None  # random erasing: probability per sample (MAE's reprob)
    erase_mode: str | None = None  # const, rand or pixel (MAE: pixel)
    erase_count: int | None = None
    auto_augment: str | None = None  # timm RandAugment string, e.g. rand-m9-mstd0.5-inc1; "none" = off
    randaugment_magnitude: float | None = None
    position_table: str | None = None  # "trained" (MAE) or "fixed"
    fc_norm: bool | None = None  # a new LayerNorm after average pooling (MAE) instead of the encoder's
    pool: str | None = None
    clip_grad: float | None = None


@dataclass
class EvalConfig:
    protocols: list[str] = field(default_factory=lambda: ["knn", "linear_probe"])
    knn_k: int = 20
    knn_temperature: float = 0.07
    probe_epochs: int = 50
    pool: str = "cls"
    batch_size: int = 128
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)


@dataclass
class RunConfig:
    adapter: str = "image"
    model: ModelConfig = field(default_factory=ModelConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert ``value`` against a (resolved) type annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner,) = typing.get_args(annotation) or (Any,)
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, where)
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"unknown key {path!r}{suggest(str(key), sorted(names))}")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def validate(config: RunConfig) -> RunConfig:
    """Range checks that types alone cannot express."""
    mask, model = config.mask, config.model
    if mask.ratio is not None and not 0.0 < mask.ratio < 1.0:
        raise ConfigError(f"mask.ratio must be in (0, 1), got {mask.ratio}")
    if mask.strategy is not None and mask.strategy not in MASK_STRATEGIES:
        raise ConfigError(f"mask.strategy must be one of {', '.join(MASK_STRATEGIES)}, got {mask.strategy!r}"
                          f"{suggest(str(mask.strategy), list(MASK_STRATEGIES))}")
    if mask.noise not in MASK_NOISES:
        raise ConfigError(f"mask.noise must be one of {', '.join(MASK_NOISES)}, got {mask.noise!r}")
    if model.decoder not in ("self", "cross"):
        raise ConfigError(f"model.decoder must be 'self' or 'cross', got {model.decoder!r}")
    if model.cross_features not in ("mixed", "last"):
        raise ConfigError(f"model.cross_features must be 'mixed' (CrossMAE feature mapping) or 'last' (the "
                          f"encoder's final output), got {model.cross_features!r}"
                          f"{suggest(str(model.cross_features), ['mixed', 'last'])}")
    if model.loss not in ("mse", "l1"):
        raise ConfigError(f"model.loss must be 'mse' or 'l1', got {model.loss!r}")
    if isinstance(model.query, str) and model.query not in ("masked", "all"):
        raise ConfigError(f"model.query must be 'masked', 'all' or a fraction in (0, 1], got {model.query!r}")
    if not isinstance(model.query, str) and not 0.0 < model.query <= 1.0:
        raise ConfigError(f"model.query must be a fraction in (0, 1], got {model.query}")
    for key in ("patch_size", "img_size", "in_chans", "decoder_embed_dim", "decoder_depth", "decoder_num_heads"):
        if getattr(model, key) is not None and getattr(model, key) < 1:
            raise ConfigError(f"model.{key} must be at least 1, got {getattr(model, key)}")
    if model.depth is not None and model.depth < 1:
        raise ConfigError(f"model.depth must be at least 1, got {model.depth}")
    engine, optim = config.engine, config.optim
    positive = {"engine.batch_size": engine.batch_size, "engine.checkpoint_every": engine.checkpoint_every,
                "engine.log_every": engine.log_every, "engine.max_steps": engine.max_steps,
                "engine.epochs": engine.epochs, "engine.threads": engine.threads,
                "data.stats_samples": config.data.stats_samples, "data.max_pixels": config.data.max_pixels}
    for key, value in positive.items():
        if value is not None and value < 1:
            raise ConfigError(f"{key} must be at least 1, got {value}")
    non_negative = {"engine.figure_every": engine.figure_every, "data.num_workers": config.data.num_workers,
                    "optim.warmup_steps": optim.warmup_steps, "optim.warmup_epochs": optim.warmup_epochs,
                    "optim.weight_decay": optim.weight_decay,
                    "optim.min_lr": optim.min_lr, "model.drop_path_rate": model.drop_path_rate}
    for key, value in non_negative.items():
        if value is not None and value < 0:
            raise ConfigError(f"{key} must not be negative, got {value}")
    for key, value in (("optim.base_lr", optim.base_lr), ("optim.lr", optim.lr), ("optim.clip_grad", optim.clip_grad)):
        if value is not None and not value > 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    if optim.warmup_steps is not None and optim.warmup_epochs is not None:
        raise ConfigError(f"optim.warmup_steps ({optim.warmup_steps}) and optim.warmup_epochs ({optim.warmup_epochs}) "
                          "are both set; give warmup in steps or in epochs, not both (set the other to null)")
    if optim.warmup_epochs is not None and engine.epochs is not None and engine.max_steps is None \
            and optim.warmup_epochs >= engine.epochs:
        raise ConfigError(f"optim.warmup_epochs ({optim.warmup_epochs}) must be shorter than engine.epochs "
                          f"({engine.epochs})")
    tune = config.eval.finetune
    for key in ("label_smoothing", "mixup_prob", "mixup_switch_prob", "erase_prob"):
        value = getattr(tune, key)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"eval.finetune.{key} must be in [0, 1], got {value}")
    for key, known in (("position_table", POSITION_TABLES), ("erase_mode", ERASING_MODES)):
        value = getattr(tune, key)
        if value is not None and value not in known:
            raise ConfigError(f"eval.finetune.{key} must be one of {', '.join(known)}, got {value!r}"
                              f"{suggest(str(value), list(known))}")
    if len(optim.betas) != 2 or not all(0.0 <= b < 1.0 for b in optim.betas):
        raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {optim.betas}")
    if not (engine.device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", engine.device)):
        raise ConfigError(f"engine.device must be auto, cpu, cuda, cuda:N or mps, got {engine.device!r}")
    knn = engine.online_knn
    if knn.every < 0 or knn.k < 1 or not knn.temperature > 0 or knn.batch_size < 1:
        raise ConfigError(f"engine.online_knn: every must be >= 0 (0 = off), k and batch_size >= 1 and temperature "
                          f"> 0; got every={knn.every}, k={knn.k}, batch_size={knn.batch_size}, "
                          f"temperature={knn.temperature}")
    if knn.pool not in ("cls", "avg"):
        raise ConfigError(f"engine.online_knn.pool must be 'cls' or 'avg', got {knn.pool!r}")
    if knn.every and not knn.train:
        raise ConfigError(f"engine.online_knn.every={knn.every} needs engine.online_knn.train (labelled sources: "
                          "class folders or CSV label lists, as evaluate reads them)")
    if engine.distributed not in ("ddp", "fsdp"):
        raise ConfigError(f"engine.distributed must be 'ddp' or 'fsdp', got {engine.distributed!r}"
                          f"{suggest(str(engine.distributed), ['ddp', 'fsdp'])}")
    if engine.distributed == "fsdp" and engine.precision == "fp16":
        raise ConfigError("engine.distributed=fsdp does not support engine.precision=fp16 (its GradScaler is not "
                          "shard-aware); use bf16 or fp32")
    if engine.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"engine.precision must be auto, fp32, bf16 or fp16, got {engine.precision!r}")
    if config.model.img_size % config.model.patch_size:
        raise ConfigError(f"model.img_size {config.model.img_size} is not divisible by model.patch_size {config.model.patch_size}")
    if config.optim.accum_steps < 1:
        raise ConfigError("optim.accum_steps must be at least 1")
    if not 0.0 <= config.data.max_bad_fraction <= 1.0:
        raise ConfigError("data.max_bad_fraction must be in [0, 1]")
    return config


def config_from_dict(data: Mapping[str, Any], where: str = "") -> RunConfig:
    try:
        return validate(_build(RunConfig, data, ""))
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}" if where else str(err)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``model.preset=tiny`` -> (["model", "preset"], "tiny"); values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override {text!r} has no key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as err:
        reason = str(err).strip().splitlines()[0]
        raise ConfigError(f"override {key}: not a plain YAML value ({reason})") from None
    return key.split("."), value


def merge_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(path)}: {part!r} is not a section")
    node[path[-1]] = value


def deep_merge(dst: dict[str, Any], src: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``src`` into ``dst`` section by section (nested mappings merge, other values replace)."""
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            deep_merge(dst[key], value)
        else:
            dst[key] = dict(value) if isinstance(value, Mapping) else value
    return dst


# The recipes: configs/ of the checkout, shipped in the package as mae_domains/recipes (a link to it).
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
RECIPE_SUFFIXES = (".yaml", ".yml")


def recipe_names() -> list[str]:
    """Names of the recipes shipped with mae-domains (``--config NAME``)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """The shipped recipe ``name``: its file name without ``.yaml``, or an unambiguous end of it
    (``xray_vit_base`` is ``medical_xray_vit_base``)."""
    stem = next((name[: -len(s)] for s in RECIPE_SUFFIXES if name.endswith(s)), name)
    names = recipe_names()
    matches = [n for n in names if n == stem] or [n for n in names if n.endswith("_" + stem)]
    if len(matches) == 1:
        return RECIPES_DIR / f"{matches[0]}.yaml"
    if matches:
        raise ConfigError(f"{name}: several recipes end with that name ({', '.join(matches)}); give the whole name")
    raise ConfigError(f"{name}: config file not found, and no recipe has that name{suggest(stem, names)}; recipes: "
                      f"{', '.join(names)} (`mae-domains recipes` describes them)")


def recipe_listing() -> str:
    """One entry per shipped recipe: name, adapter and model preset, then the paper it follows (its header)."""
    entries = []
    for name in recipe_names():
        text = (RECIPES_DIR / f"{name}.yaml").read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        paper = next((line[len("# Paper: "):] for line in text.splitlines() if line.startswith("# Paper: ")), "")
        preset = (data.get("model") or {}).get("preset", ModelConfig.preset)
        entries.append(f"{name}  (adapter {data.get('adapter', RunConfig.adapter)}, {preset} preset)\n    {paper}")
    return "\n".join(entries)


def config_file(path_or_name: str | Path) -> Path:
    """The YAML file ``--config`` names: an existing file, else a shipped recipe by name. A missing path
    whose file name is a recipe's says to give the name (``configs/`` exists only in a checkout)."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    text = str(path_or_name)
    if "/" not in text and os.sep not in text:
        return recipe_path(text)
    if path.stem in recipe_names() and path.suffix in RECIPE_SUFFIXES:
        raise ConfigError(f"{path}: config file not found; the recipe ships with mae-domains: --config {path.stem}")
    raise ConfigError(f"{path}: config file not found")


def read_config_data(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                     base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The merged, not yet validated sections: ``base`` <- YAML file (a path or a recipe name) <- overrides."""
    data: dict[str, Any] = deep_merge({}, base or {})
    if path is not None:
        file = config_file(path)
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{file}: not valid YAML ({err})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping of sections")
        deep_merge(data, loaded)
    for text in overrides:
        keys, value = parse_override(text)
        merge_override(data, keys, value)
    return data


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), base: Mapping[str, Any] | None = None
) -> RunConfig:
    """Defaults <- ``base`` (e.g. an adapter's recipe) <- YAML file or recipe name <- dotted overrides, validated."""
    data = read_config_data(path, overrides, base)
    return config_from_dict(data, "" if path is None else str(config_file(path)))


def dump_config(config: RunConfig, path: str | Path, comments: Sequence[str] = ()) -> None:
    """Write ``config`` as YAML, ``comments`` (e.g. the resolved schedule) as ``#`` lines on top."""
    header = "".join(f"# {line}\n" for line in comments)
    Path(path).write_text(header + yaml.safe_dump(config.to_dict(), sort_keys=False))
