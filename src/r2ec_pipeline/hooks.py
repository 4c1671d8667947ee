"""Project hooks: fail on a bad parameter before any node runs; size torch's thread pool."""

from __future__ import annotations

import logging
import os

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl

from r2ec_pipeline.config import validate_parameters

logger = logging.getLogger(__name__)


class ParameterValidationHooks:
    """Validate all parameter blocks against their typed models as soon as the context exists.

    Then set torch's intra-op threads explicitly (``model.num_threads``, default every core):
    oversubscribed thread pools made generation 10x slower on a 2-core machine.
    """

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        typed = validate_parameters(context.params)
        logger.info("parameters validated: %s", ", ".join(sorted(context.params)))
        import torch

        threads = typed["model"].num_threads or os.cpu_count() or 1
        torch.set_num_threads(threads)
        logger.info("torch threads: %d", threads)
