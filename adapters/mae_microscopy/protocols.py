"""The cell-biology workflow as registered evaluation protocols (run by ``mae_domains.evaluation``, e.g.
``mae-domains evaluate --protocol microscopy.replicate_map --set controls=[DMSO]``):

- ``microscopy.replicate_map``: embed the test archive crop by crop, aggregate per well, batch-correct
  (PCA on controls, centre/scale per plate, optional CORAL), replicate-consistency mAP per perturbation;
- ``microscopy.relationship_recall``: the same profiles aggregated per perturbation, recall of the
  known relationships listed in the ``relationships`` CSV;
- ``microscopy.one_nn_f1``: 1-nearest-neighbour macro-F1 on frozen features (labels from the loaders);
- ``microscopy.chammi``: the same, with the training split embedded from one channel subset
  (``train_channels``) and the test split from another (``test_channels``).

The profile protocols read ``plate``/``well``/``perturbation`` from each batch's ``meta`` (manifest ids).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from mae_domains.protocols import EvaluationProtocol, ProtocolContext, ProtocolResult
from mae_microscopy.aggregation import ProfileTable, aggregate, embed_batches, embed_grid, select_channels
from mae_microscopy.batch_correction import CorrectionSettings, batch_correct
from mae_microscopy.bio_metrics import one_nn_macro_f1, read_relationships, relationship_recall, replicate_map

LEVELS = {"well": ["plate", "well"], "image": ["plate", "well", "site", "image"]}


def encoder_embedder(context: ProtocolContext, pool: str):
    """``batch -> (B, D)`` from the context's encoder and grid batches, on the context's device."""
    if context.encoder is None or context.grid_batch is None:
        raise ValueError("this protocol embeds batches itself: give the runner an encoder and grid_batch (the "
                         "adapter's), not precomputed features")
    device = torch.device("cuda" if context.device == "auto" and torch.cuda.is_available() else
                          "cpu" if context.device == "auto" else context.device)
    encoder = context.encoder.to(device).eval()
    return lambda batch: embed_grid(encoder, context.grid_batch(batch, device), pool)


def split_table(context: ProtocolContext, split: str, channels: Sequence[str] | None = None) -> ProfileTable:
    """Crop embeddings and ids of a split, optionally from a channel subset."""
    loader: Iterable[Mapping[str, Any]] = context.train if split == "train" else context.test
    return embed_batches(loader, encoder_embedder(context, str(context.settings["pool"])), channels)


def corrected_profiles(crops: ProfileTable, settings: Mapping[str, Any]) -> tuple[ProfileTable, np.ndarray]:
    """Profiles at ``settings["level"]`` (well or image), batch-corrected on the ``controls`` of each
    ``batch_key`` when ``correct``; returns the table and the corrected features."""
    level = str(settings["level"])
    if level not in LEVELS:
        raise ValueError(f"setting level must be one of {', '.join(LEVELS)}, got {level!r}")
    table = aggregate(crops, LEVELS[level])
    group_key = str(settings["group_by"])
    groups = table.column(group_key)
    if (groups == "").any():
        raise ValueError(f"{int((groups == '').sum())} profile(s) have no {group_key!r} id (or it differs between "
                         f"the crops of one {level}); give it in the manifest")
    if not settings["correct"]:
        return table, table.features.astype(np.float64)
    controls = np.isin(groups, [str(c) for c in settings["controls"]])
    if not controls.any():
        raise ValueError(f"no profile has a control {group_key} among {list(settings['controls'])}; set controls=[...] "
                         "or correct=false")
    correction = CorrectionSettings(pca_components=settings["pca_components"], coral=bool(settings["coral"]))
    return table, batch_correct(table.features, table.column(str(settings["batch_key"])), controls, correction)


PROFILE_DEFAULTS: dict[str, Any] = {
    "pool": "cls", "level": "well", "group_by": "perturbation", "batch_key": "plate", "controls": ["DMSO"],
    "correct": True, "pca_components": None, "coral": False,
}


class ReplicateMapProtocol(EvaluationProtocol):
    name = "microscopy.replicate_map"
    description = "replicate consistency: mAP of replicate wells retrieving each other after batch correction"
    seeded = False

    def defaults(self) -> dict[str, Any]:
        return {**PROFILE_DEFAULTS, "negatives": "others"}

    def run(self, context: ProtocolContext) -> ProtocolResult:
        table, features = corrected_profiles(split_table(context, "test"), context.settings)
        groups = table.column(str(context.settings["group_by"]))
        result = replicate_map(features, groups, [str(c) for c in context.settings["controls"]],
                               str(context.settings["negatives"]))
        return ProtocolResult({"replicate_map": result.map, "groups": float(result.queried_groups)},
                              per_class={"ap": {str(k): v for k, v in result.per_group.items()}},
                              n_test=len(table), details={"profiles": table})


class RelationshipRecallProtocol(EvaluationProtocol):
    name = "microscopy.relationship_recall"
    description = "share of known relationships in the 5%/95% tails of perturbation-profile cosine similarity"
    seeded = False

    def defaults(self) -> dict[str, Any]:
        return {**PROFILE_DEFAULTS, "relationships": None, "lower_percentile": 5.0, "upper_percentile": 95.0}

    def run(self, context: ProtocolContext) -> ProtocolResult:
        s = context.settings
        if not s["relationships"]:
            raise ValueError("microscopy.relationship_recall needs relationships=PATH (a CSV of entity_a,entity_b pairs)")
        table, features = corrected_profiles(split_table(context, "test"), s)
        key = str(s["group_by"])
        perturbations = aggregate(ProfileTable(features, {key: table.column(key)}), [key])
        result = relationship_recall(perturbations.features, perturbations.column(key),
                                     read_relationships(s["relationships"]), float(s["lower_percentile"]),
                                     float(s["upper_percentile"]))
        return ProtocolResult({"recall": result.recall, "pairs": float(len(result.pairs)),
                               "missing_pairs": float(result.missing)}, n_test=len(perturbations))


class OneNNProtocol(EvaluationProtocol):
    name = "microscopy.one_nn_f1"
    description = "1-nearest-neighbour macro-F1 on frozen features (CHAMMI's classifier)"
    seeded = False

    def defaults(self) -> dict[str, Any]:
        return {"pool": "cls", "metric": "cosine"}

    def run(self, context: ProtocolContext) -> ProtocolResult:
        train, test = context.split_features("train"), context.split_features("test")
        f1 = one_nn_macro_f1(train.features, train.labels, test.features, test.labels, str(context.settings["metric"]))
        return ProtocolResult({"macro_f1": f1}, n_train=len(train), n_test=len(test))


class ChammiProtocol(EvaluationProtocol):
    name = "microscopy.chammi"
    description = "channel-adaptive 1-NN macro-F1: trained on one channel subset, tested on another"
    seeded = False

    def defaults(self) -> dict[str, Any]:
        return {"pool": "cls", "metric": "cosine", "train_channels": None, "test_channels": None}

    def run(self, context: ProtocolContext) -> ProtocolResult:
        s = context.settings
        embed = encoder_embedder(context, str(s["pool"]))
        out = {}
        for split, loader, channels in (("train", context.train, s["train_channels"]),
                                        ("test", context.test, s["test_channels"])):
            features, labels = [], []
            with torch.no_grad():
                for batch in loader:
                    features.append(embed(select_channels(batch, channels)).float().cpu().numpy())
                    labels.append(np.asarray(batch["label"]))
            if not features:
                raise ValueError(f"microscopy.chammi: the {split} split is empty")
            out[split] = (np.concatenate(features), np.concatenate(labels))
        f1 = one_nn_macro_f1(*out["train"], *out["test"], metric=str(s["metric"]))
        return ProtocolResult({"macro_f1": f1}, n_train=len(out["train"][0]), n_test=len(out["test"][0]))

