"""prompts: validated interactions → windowed samples with splits → user/item prompts + summary."""

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.pipelines.prompts.nodes import (
    make_samples,
    render_item_prompts,
    render_user_prompts,
    summarize_prompts,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=make_samples,
                inputs=["validated_interactions", "params:prompts"],
                outputs="samples",
                name="make_samples",
            ),
            Node(
                func=render_user_prompts,
                inputs=["samples", "validated_items", "backbone_tokenizer", "params:prompts"],
                outputs=["train_samples", "valid_samples", "test_samples"],
                name="render_user_prompts",
            ),
            Node(
                func=render_item_prompts,
                inputs=["validated_items", "backbone_tokenizer", "params:prompts"],
                outputs="item_prompts",
                name="render_item_prompts",
            ),
            Node(
                func=summarize_prompts,
                inputs=["train_samples", "valid_samples", "test_samples", "item_prompts", "validated_interactions"],
                outputs=["prompt_summary", "prompt_metrics"],
                name="summarize_prompts",
            ),
        ]
    )
