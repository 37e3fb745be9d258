"""Loader workers are forked from a process that may have OpenCV's thread pool running (albumentations in
the main process, a blur): a worker must never wait on that pool's locks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import numpy as np, cv2, torch
    from PIL import Image
    from pathlib import Path
    from mae_domains.data.loaders import evaluation_loader
    from mae_domains.registry import get_adapter

    cv2.setNumThreads(2)
    big = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    for _ in range(3):
        cv2.GaussianBlur(big, (0, 0), 3.0)  # the parent's pool threads are now alive
    root = Path(__import__("sys").argv[1])
    for i in range(4):
        Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(root / f"{i}.png")
    adapter = get_adapter("image")
    adapter.config.model.img_size = 32
    refs = adapter.discover([root])
    loader = evaluation_loader(adapter, refs, None, batch_size=2, num_workers=2)
    print(sum(batch["image"].shape[0] for batch in loader))
""")


@pytest.mark.slow
def test_workers_forked_after_opencv_used_threads_do_not_hang(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"
