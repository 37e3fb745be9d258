"""Statistics over a long archive say how far they are."""

from __future__ import annotations

import numpy as np
from PIL import Image

from mae_domains.registry import get_adapter


def test_statistics_log_progress_at_every_tenth(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for i in range(60):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "99.png").write_bytes(b"not a png")
    adapter = get_adapter("image")
    refs = adapter.discover([tmp_path])
    with caplog.at_level("INFO"):
        stats = adapter.compute_stats(refs, max_samples=61)
    progress = [r.getMessage() for r in caplog.records if "samples read" in r.getMessage()]
    assert len(progress) == 10 and progress[0].startswith("normalization statistics: 6 of 61 samples read")
    assert stats.count == 60
