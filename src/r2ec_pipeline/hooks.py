"""Project hooks: fail on a bad parameter before any node runs or any output is written."""

from __future__ import annotations

import logging

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl

from r2ec_pipeline.config import validate_parameters

logger = logging.getLogger(__name__)


class ParameterValidationHooks:
    """Validate all parameter blocks against their typed models as soon as the context exists."""

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        validate_parameters(context.params)
        logger.info("parameters validated: %s", ", ".join(sorted(context.params)))
