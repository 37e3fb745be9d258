"""Seeds derived from (run seed, epoch, sample index, stream): independent of worker and process count."""

from __future__ import annotations

import numpy as np

# Streams keep augmentation, masking and replacement draws of one sample independent of each other.
STREAM_AUGMENT = 0
STREAM_MASK = 1
STREAM_REPLACE = 2


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from any tuple of non-negative integers (numpy ``SeedSequence`` hashing)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts] + [len(parts)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF
