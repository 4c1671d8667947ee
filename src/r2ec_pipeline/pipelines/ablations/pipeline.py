"""ablations: per variant (a Kedro namespace), recpo's own nodes from the SFT checkpoint, then ranking; one summary."""

from functools import partial

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.config import ABLATION_VARIANTS
from r2ec_pipeline.pipelines.ablations.nodes import (
    rank_variant,
    start_after,
    summarise_ablations,
    variant_recpo_params,
)
from r2ec_pipeline.pipelines.shared.recpo import start_policy, train_recpo_model
from r2ec_pipeline.pipelines.shared.samples import select_eval_samples

SHARED_INPUTS = {
    "sft_model",
    "backbone_folder",
    "backbone_tokenizer",
    "train_samples",
    "valid_samples",
    "item_prompts",
    "validated_interactions",
    "evaluation_samples",
}
PARAMETERS = {"params:recpo", "params:model", "params:prompts", "params:evaluation", "params:ablations"}


def _variant(variant: str, previous: str | None) -> Pipeline:
    """One variant's nodes in its namespace; it starts only after ``previous`` has been ranked, so the
    runner holds one variant's policy at a time (models pass between nodes uncopied: catalog factories)."""
    policy_inputs = [
        "sft_model",
        "backbone_folder",
        "backbone_tokenizer",
        "params:model",
        "params:prompts",
        "recpo_params",
    ]
    start = (
        Node(start_policy, policy_inputs, "initial_model", name="start_policy")
        if previous is None
        else Node(start_after, ["previous_rankings", *policy_inputs], "initial_model", name="start_policy")
    )
    template = Pipeline(
        [
            Node(
                partial(variant_recpo_params, variant=variant),
                ["params:recpo", "params:ablations"],
                "recpo_params",
                name="recpo_params",
            ),
            start,
            Node(
                partial(select_eval_samples, block="recpo"),
                ["valid_samples", "recpo_params"],
                "validation_samples",
                name="validation_samples",
            ),
            Node(
                train_recpo_model,
                [
                    "initial_model",
                    "train_samples",
                    "validation_samples",
                    "item_prompts",
                    "validated_interactions",
                    "recpo_checkpoints",
                    "params:model",
                    "params:prompts",
                    "recpo_params",
                ],
                ["recpo_model", "recpo_history", "recpo_samples", "recpo_report"],
                name="train_recpo",
            ),
            Node(
                partial(rank_variant, variant=variant),
                [
                    "recpo_model",
                    "evaluation_samples",
                    "validated_interactions",
                    "params:model",
                    "params:evaluation",
                    "params:ablations",
                ],
                "rankings",
                name="rank",
            ),
        ]
    )
    inputs = {name: name for name in SHARED_INPUTS} | (
        {"previous_rankings": f"{previous}.rankings"} if previous else {}
    )
    return Pipeline(template, namespace=variant, inputs=inputs, parameters=PARAMETERS)


def create_pipeline(**kwargs) -> Pipeline:
    order = list(ABLATION_VARIANTS)
    variants = sum((_variant(name, order[k - 1] if k else None) for k, name in enumerate(order)), Pipeline([]))
    results = [name for variant in ABLATION_VARIANTS for name in (f"{variant}.rankings", f"{variant}.recpo_report")]
    summary = Pipeline(
        [
            Node(
                summarise_ablations,
                ["params:recpo", "params:ablations", "params:evaluation", *results],
                ["ablation_metrics", "ablation_table", "ablation_plot"],
                name="summarise_ablations",
            ),
        ]
    )
    return variants + summary
