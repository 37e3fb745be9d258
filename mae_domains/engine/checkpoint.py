"""Full resume state, written atomically (temp file + fsync + rename), loaded with ``weights_only=True``."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mae_domains.weights import check_finite_weights
from mae_domains.runs.layout import CHECKPOINT_NAME
from mae_domains.weights import CheckpointFormatError, safe_torch_load


def capture_rng() -> dict[str, Any]:
    """Global RNG states (torch CPU/CUDA, numpy, python) as tensors and plain values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": (int(np_state[3]), float(np_state[4])),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], *state["numpy_gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves the previous checkpoint and no debris
        raise
    return path


RESUME_KEYS = ("model", "optimizer", "scaler", "step", "rng", "stats", "config")


def load_resume_state(run_dir: str | Path) -> dict[str, Any]:
    """The run's full resume state; a file that is not one (a plain state dict, another program's
    checkpoint) or holds NaN/Inf weights or optimizer moments is refused naming the file."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    state = safe_torch_load(path)
    missing = [k for k in RESUME_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        plain = isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())
        what = "a plain state dict" if plain else f"missing {', '.join(missing)}"
        raise CheckpointFormatError(f"{path}: not a run checkpoint of mae-domains ({what}); "
                                    "embed or export can load weights, only a run's own checkpoint resumes")
    check_finite_weights(state["model"], path, "model weights")
    optimizer = state["optimizer"]
    check_finite_weights(optimizer.get("state", {}) if isinstance(optimizer, dict) else {}, path, "optimizer moments")
    return state
