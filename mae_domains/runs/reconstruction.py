"""The batch a reconstruction figure shows: the first ``count`` readable samples of an archive that can
share a batch; bad samples are skipped and listed, never replaced by another draw."""

from __future__ import annotations

from typing import Any, Sequence

from mae_domains.data.loaders import evaluation_loader
from mae_domains.runs.embedding import NoReadableSamples, Skipped, skipped_summary
from mae_domains.runs.model import LoadedModel
from mae_domains.shards import open_archive


def reconstruction_batch(loaded: LoadedModel, sources: Sequence[str], count: int) -> tuple[dict[str, Any], list[Skipped]]:
    """A collated batch of up to ``count`` readable samples (the first full batch, else the fullest) and the
    samples skipped on the way; :class:`NoReadableSamples` when none could be read."""
    reader, refs = open_archive(loaded.adapter, sources)  # files, or prepared shards
    loader = evaluation_loader(reader, refs, loaded.stats, batch_size=count,
                               seed=loaded.config.engine.seed, skip_bad=True)
    best: dict[str, Any] | None = None
    skipped: list[Skipped] = []
    for batch in loader:
        skipped.extend(Skipped(str(s[0]), str(s[1])) for s in batch.get("skipped", []))
        if "image" in batch and (best is None or batch["image"].shape[0] > best["image"].shape[0]):
            best = batch
            if best["image"].shape[0] >= count:
                break
    if best is None:
        raise NoReadableSamples(f"none of the {len(refs)} samples in {', '.join(map(str, sources))} could be read "
                                f"(first: {skipped_summary(skipped)})", skipped)
    return best, skipped
