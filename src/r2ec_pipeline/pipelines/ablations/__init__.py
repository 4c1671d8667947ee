"""ablations: RecPO variants (reward, advantage, relabelling, β) trained and ranked side by side."""

from r2ec_pipeline.pipelines.ablations.pipeline import create_pipeline

__all__ = ["create_pipeline"]
