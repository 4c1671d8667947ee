"""SFT warm-start of the rec head: the paper's "w/o reasoning" model and the RecPO start point."""

from r2ec_pipeline.pipelines.sft.pipeline import create_pipeline

__all__ = ["create_pipeline"]
