"""Evaluation protocols as registered objects: what a protocol is given, what it returns, the registry.

A protocol subclasses :class:`EvaluationProtocol` (a ``name``, its default settings, ``run``) and is
registered with :func:`register_protocol`; the runner of :mod:`mae_domains.evaluation` then dispatches
to it by name, caches its frozen features and turns its :class:`ProtocolResult` into result records, so
an adapter adds a protocol without writing a runner of its own (and without importing the evaluation
package)::

    class CentroidProtocol(EvaluationProtocol):
        name = "centroid"
        def defaults(self):
            return {"pool": "avg"}
        def run(self, context):
            train, test = context.features("train"), context.features("test")
            ...
            return ProtocolResult(summary={"top1": accuracy}, n_train=len(train), n_test=len(test))

and registered in its distribution's ``pyproject.toml``, as the built-ins (``knn``, ``linear_probe``,
``finetune``, ``multilabel_map``, ``anomaly``, ...) are in mae-domains' own::

    [project.entry-points."mae_domains.protocols"]
    centroid = "my_package.protocols:CentroidProtocol"

The registry loads the ``mae_domains.protocols`` entry points once, on first use. :func:`register_protocol`
adds one in a running process (tests, notebooks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch
from torch import nn

from mae_domains.entry_point_groups import PROTOCOLS, load_group, warn_skipped
from mae_domains.grid import GridBatch

Batch = Mapping[str, Any]
GridBatchFn = Callable[[Batch, torch.device], GridBatch]


@dataclass
class ProtocolResult:
    """Summary metrics, optional confidence intervals ``(low, high)`` per summary metric, per-class values
    (``metric -> class name -> value``), train and test sizes, and free-form ``details`` (not recorded)."""

    summary: dict[str, float]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    n_train: int = 0
    n_test: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProtocolContext:
    """What a protocol may use.

    ``features(split)`` (``"train"`` or ``"test"``) returns the frozen, cached embeddings of a split as an
    object with ``features`` ``(N, D)``, ``labels`` ``(N,)`` int or ``(N, K)`` multi-hot and
    ``sample_ids``. ``train`` / ``test`` are loaders of dict batches (``image``, ``label``, ``sample_id``
    ...) with evaluation transforms; ``train_augmented`` is the shuffled, augmented training loader when
    there is one. ``encoder`` is the model's encoder (None for a raw-pixel baseline) and
    ``grid_batch(batch, device)`` turns a batch into the encoder's :class:`GridBatch` (pixels, validity,
    spacing, dates ...). ``model`` is the whole model (the MAE with its decoder) when the weights held one
    (a run folder or checkpoint; None for an encoder-only export), and ``model_inputs(batch, device)`` the
    keyword arguments of its forward (the adapter's ``model_inputs``). ``settings`` are resolved: the
    protocol's defaults, then the adapter's ``protocol_defaults``, then the caller's. ``test_groups(ids)``,
    when the dataset names dependent groups of test samples, gives each test sample id its group: bootstrap
    intervals then resample whole groups.
    """

    train: Iterable[Batch]
    test: Iterable[Batch]
    settings: dict[str, Any]
    features: Callable[[str], Any] | None = None
    seed: int = 0
    device: str = "auto"
    class_names: Sequence[str] | None = None
    encoder: nn.Module | None = None
    grid_batch: GridBatchFn | None = None
    train_augmented: Iterable[Batch] | None = None
    progress: bool | None = None
    model: nn.Module | None = None
    model_inputs: Callable[[Batch, torch.device], dict[str, Any]] | None = None
    test_groups: Callable[[Sequence[str]], Any] | None = None

    def split_features(self, split: str) -> Any:
        if self.features is None:
            raise ValueError("this protocol needs frozen features; give the runner an encoder or an embedding")
        return self.features(split)


class EvaluationProtocol(ABC):
    """Base of every protocol.

    ``name`` is the registered name. ``trains_encoder``: the protocol trains the encoder itself
    (fine-tuning), so a checkpoint without an encoder (raw pixels) is skipped. ``seeded``: False for a
    deterministic protocol (kNN), run once whatever the seeds. A ``pool`` setting (``cls`` or ``avg``)
    decides how the frozen features of ``context.features`` are pooled. ``needs_train``: False for a
    protocol that only scores the test split (anomaly scoring), so no training split need be given.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    trains_encoder: ClassVar[bool] = False
    seeded: ClassVar[bool] = True
    needs_train: ClassVar[bool] = True

    def defaults(self) -> dict[str, Any]:
        """Every setting with its default value (the seed is passed separately)."""
        return {}

    def dataset_builder(self) -> Callable[..., Any] | None:
        """How the runner reads a dataset entry for this protocol when its data are not labelled samples
        (e.g. scene / label raster pairs): ``(entry, checkpoint, options, root) -> DownstreamData``, whose
        ``train`` / ``test`` become the context's; None (the default) for the runner's labelled samples."""
        return None

    @abstractmethod
    def run(self, context: ProtocolContext) -> ProtocolResult:
        """Evaluate and return the metrics."""


_PROTOCOLS: dict[str, EvaluationProtocol] = {}
_LOADED_ENTRIES: set[str] = set()  # entry points already registered (or skipped with a warning)


def register_protocol(protocol: EvaluationProtocol | type[EvaluationProtocol], replace: bool = False) -> EvaluationProtocol:
    """Register a protocol (an instance, or a class built without arguments) under its ``name``; a second
    protocol under a taken name is an error unless ``replace``. Returns the registered instance."""
    instance = protocol() if isinstance(protocol, type) else protocol
    if not isinstance(instance, EvaluationProtocol):
        raise TypeError(f"{type(instance).__name__} is not an EvaluationProtocol")
    if not instance.name:
        raise ValueError(f"{type(instance).__name__} has no name")
    known = _PROTOCOLS.get(instance.name)
    if known is not None and not replace and type(known) is not type(instance):
        raise ValueError(f"protocol {instance.name!r} is already registered ({type(known).__name__})")
    _PROTOCOLS[instance.name] = instance
    return instance


def unregister_protocol(name: str) -> None:
    _PROTOCOLS.pop(name, None)


def _load_plugins() -> None:
    """Register the protocols of the ``mae_domains.protocols`` entry points, each once per process, built-ins
    first (a plugin cannot take a built-in's name; one registered in the process keeps its protocol)."""
    for entry in load_group(PROTOCOLS):
        if entry.origin in _LOADED_ENTRIES:
            continue
        _LOADED_ENTRIES.add(entry.origin)
        cls = entry.obj
        if not (isinstance(cls, type) and issubclass(cls, EvaluationProtocol)):
            warn_skipped(PROTOCOLS, entry, "is not an EvaluationProtocol subclass")
            continue
        name = cls.name or entry.name
        if name in _PROTOCOLS:
            if type(_PROTOCOLS[name]) is not cls:
                warn_skipped(PROTOCOLS, entry, f"takes the name {name!r} of {type(_PROTOCOLS[name]).__name__}")
            continue
        try:
            register_protocol(cls)
        except (TypeError, ValueError) as err:
            warn_skipped(PROTOCOLS, entry, f"cannot be registered ({err})")


def protocol_names() -> list[str]:
    """Registered protocol names, sorted (the installed plugins' included)."""
    _load_plugins()
    return sorted(_PROTOCOLS)


def get_protocol(name: str) -> EvaluationProtocol:
    """The protocol registered as ``name``; unknown names are errors with a suggestion."""
    _load_plugins()
    if name not in _PROTOCOLS:
        from mae_domains.config import suggest

        raise ValueError(f"unknown protocol {name!r}{suggest(name, protocol_names())}; "
                         f"use one of {', '.join(protocol_names()) or 'none registered'}")
    return _PROTOCOLS[name]
