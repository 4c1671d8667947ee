"""ablations: per variant (a Kedro namespace), recpo's own nodes from the SFT checkpoint, then ranking; one summary."""

from functools import partial

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.config import ABLATION_VARIANTS
from r2ec_pipeline.pipelines.ablations.nodes import rank_variant, summarise_ablations, variant_recpo_params
from r2ec_pipeline.rl.runs import select_recpo_eval_samples, start_policy, train_recpo_model

SHARED_INPUTS = {"sft_model", "backbone_lm", "backbone_tokenizer", "train_samples", "valid_samples", "item_prompts",
                 "validated_interactions", "evaluation_samples"}
PARAMETERS = {"params:recpo", "params:model", "params:evaluation", "params:ablations"}


def _variant(variant: str) -> Pipeline:
    template = Pipeline([
        Node(partial(variant_recpo_params, variant=variant), ["params:recpo", "params:ablations"], "recpo_params",
             name="recpo_params"),
        Node(start_policy, ["sft_model", "backbone_lm", "backbone_tokenizer", "params:model", "recpo_params"],
             "initial_model", name="start_policy"),
        Node(select_recpo_eval_samples, ["valid_samples", "recpo_params"], "validation_samples",
             name="validation_samples"),
        Node(train_recpo_model,
             ["initial_model", "train_samples", "validation_samples", "item_prompts", "validated_interactions",
              "recpo_checkpoints", "params:model", "recpo_params"],
             ["recpo_model", "recpo_history", "recpo_samples", "recpo_report"], name="train_recpo"),
        Node(partial(rank_variant, variant=variant),
             ["recpo_model", "evaluation_samples", "validated_interactions", "params:model", "params:evaluation",
              "params:ablations"], "rankings", name="rank"),
    ])
    return Pipeline(template, namespace=variant, inputs=SHARED_INPUTS, parameters=PARAMETERS)


def create_pipeline(**kwargs) -> Pipeline:
    variants = sum((_variant(name) for name in ABLATION_VARIANTS), Pipeline([]))
    results = [name for variant in ABLATION_VARIANTS for name in (f"{variant}.rankings", f"{variant}.recpo_report")]
    summary = Pipeline([
        Node(summarise_ablations, ["params:recpo", "params:ablations", "params:evaluation", *results],
             ["ablation_metrics", "ablation_table", "ablation_plot"], name="summarise_ablations"),
    ])
    return variants + summary
