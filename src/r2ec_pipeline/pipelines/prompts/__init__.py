"""Samples, split protocols and chat-formatted prompts."""

from r2ec_pipeline.pipelines.prompts.pipeline import create_pipeline

__all__ = ["create_pipeline"]
