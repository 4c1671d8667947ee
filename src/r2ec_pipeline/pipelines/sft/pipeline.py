"""sft: backbone + tokenizer → zero-shot dual-head model → SFT warm-start of the rec head (method §4)."""

from functools import partial

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.pipelines.sft.nodes import train_sft_model, zero_shot_model
from r2ec_pipeline.pipelines.shared.samples import select_eval_samples


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=zero_shot_model,
                inputs=["backbone_lm", "backbone_tokenizer", "params:model", "params:prompts"],
                outputs="zero_shot_model",
                name="build_dual_head",
            ),
            Node(
                func=partial(select_eval_samples, block="sft"),
                inputs=["valid_samples", "params:sft"],
                outputs="sft_eval_samples",
                name="select_eval_samples",
            ),
            Node(
                func=train_sft_model,
                inputs=[
                    "zero_shot_model",
                    "train_samples",
                    "sft_eval_samples",
                    "item_prompts",
                    "validated_interactions",
                    "sft_checkpoints",
                    "params:model",
                    "params:prompts",
                    "params:sft",
                ],
                outputs=["sft_model", "sft_history", "sft_report"],
                name="train_sft",
            ),
        ]
    )
