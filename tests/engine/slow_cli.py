"""``mae-domains`` with a 50 ms pause per training batch, so that a test can signal a real run mid-way
(not collected by pytest). Usage: ``python slow_cli.py pretrain ...``."""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from mae_domains.cli import main  # noqa: E402
from mae_image import ImageAdapter  # noqa: E402

real_inputs = ImageAdapter.model_inputs


def slow_inputs(self, batch, device):
    time.sleep(0.05)
    return real_inputs(self, batch, device)


ImageAdapter.model_inputs = slow_inputs

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
