"""recpo: RecPO training of both heads from the SFT checkpoint (method §5)."""

from r2ec_pipeline.pipelines.recpo.pipeline import create_pipeline

__all__ = ["create_pipeline"]
