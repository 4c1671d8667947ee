"""Offline ingestion of MovieLens-100k (embedded) or an Amazon Reviews 2023 category (local files)."""

from r2ec_pipeline.pipelines.data_ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
