"""Samples, split protocols and chat-formatted prompts."""

from r2ec_pipeline.pipelines import lazy_pipeline

__getattr__ = lazy_pipeline(__name__)  # the nodes import without Kedro
__all__ = ["create_pipeline"]
