"""recpo: SFT checkpoint (or zero-shot model) → RecPO → the trained dual-head model and its report (method §5)."""

from functools import partial

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.pipelines.shared.recpo import start_policy, train_recpo_model
from r2ec_pipeline.pipelines.shared.samples import select_eval_samples


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=start_policy,
                inputs=[
                    "sft_model",
                    "backbone_folder",
                    "backbone_tokenizer",
                    "params:model",
                    "params:prompts",
                    "params:recpo",
                ],
                outputs="recpo_initial_model",
                name="start_policy",
            ),
            Node(
                func=partial(select_eval_samples, block="recpo"),
                inputs=["valid_samples", "params:recpo"],
                outputs="recpo_eval_samples",
                name="select_recpo_eval_samples",
            ),
            Node(
                func=train_recpo_model,
                inputs=[
                    "recpo_initial_model",
                    "train_samples",
                    "recpo_eval_samples",
                    "item_prompts",
                    "validated_interactions",
                    "recpo_checkpoints",
                    "params:model",
                    "params:prompts",
                    "params:recpo",
                ],
                outputs=["recpo_model@model", "recpo_history", "recpo_samples", "recpo_report"],
                name="train_recpo",
            ),
        ]
    )
