"""``engine.compile``: ``torch.compile`` of the model, falling back to eager execution when it fails.

The model is compiled in place (``nn.Module.compile``), so its state-dict keys, checkpoints and exports
do not change. Compilation happens at the first forward, not here: Dynamo's ``suppress_errors`` makes a
frame that fails to compile (no C++ compiler for Inductor, an unsupported operation) run eagerly with a
logged warning instead of stopping the run. Masking, metadata and Python loops over seeds cause graph
breaks; the transformer blocks, where the time goes, compile into fused kernels.
"""

from __future__ import annotations

import logging

from torch import nn

log = logging.getLogger("mae_domains.engine")


def compile_model(model: nn.Module) -> bool:
    """Compile ``model`` in place; False (and a warning) when torch.compile is unavailable here."""
    try:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True  # a failing frame runs eagerly (logged by Dynamo)
        model.compile()
    except Exception as err:  # torch.compile is missing or refuses this platform / Python
        log.warning("engine.compile: torch.compile is not available (%s: %s); the model runs eagerly",
                    type(err).__name__, err)
        return False
    log.info("engine.compile: the model is compiled at its first step (this takes a while)")
    return True
