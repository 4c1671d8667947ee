"""evaluation: Pop, SASRec, R²ec zero-shot, SFT, RecPO (and a shipped checkpoint) ranked on the same users →
metrics, exports, plots."""

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.pipelines.evaluation.nodes import (
    curve_tables,
    export_rankings,
    headline_metrics,
    rank_popularity,
    rank_recpo,
    rank_sasrec,
    rank_sft,
    rank_shipped,
    rank_zero_shot,
    reasoning_samples,
    select_evaluation_samples,
    shipped_model,
    summarise_rankings,
    training_curves,
)

_RANKED = ["evaluation_samples", "validated_interactions", "params:model", "params:evaluation"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                select_evaluation_samples,
                ["valid_samples", "test_samples", "params:evaluation"],
                "evaluation_samples",
                name="select_evaluation_samples",
            ),
            Node(rank_popularity, ["popularity_counts", *_RANKED], "popularity_rankings", name="rank_popularity"),
            Node(rank_sasrec, ["sasrec_model", *_RANKED], "sasrec_rankings", name="rank_sasrec"),
            Node(
                rank_zero_shot,
                ["backbone_lm", "backbone_tokenizer", "item_prompts", "params:prompts", *_RANKED],
                "zero_shot_rankings",
                name="rank_zero_shot",
            ),
            Node(rank_sft, ["sft_model", *_RANKED], "sft_rankings", name="rank_sft"),
            Node(rank_recpo, ["recpo_model@model", *_RANKED], "recpo_rankings", name="rank_recpo"),
            Node(
                shipped_model,
                [
                    "backbone_folder",
                    "backbone_tokenizer",
                    "item_prompts",
                    "validated_interactions",
                    "params:model",
                    "params:prompts",
                    "params:evaluation",
                ],
                "shipped_models@model",
                name="shipped_model",
            ),
            Node(rank_shipped, ["shipped_models@model", *_RANKED], "shipped_rankings", name="rank_shipped"),
            Node(
                summarise_rankings,
                [
                    "popularity_rankings",
                    "sasrec_rankings",
                    "zero_shot_rankings",
                    "sft_rankings",
                    "recpo_rankings",
                    "shipped_rankings",
                    "params:evaluation",
                ],
                ["evaluation_metrics", "evaluation_history", "evaluation_rankings", "metrics_plot"],
                name="summarise_rankings",
            ),
            Node(
                export_rankings,
                [
                    "evaluation_rankings",
                    "validated_interactions",
                    "validated_items",
                    "evaluation_samples",
                    "params:model",
                ],
                "rankings_export",
                name="export_rankings",
            ),
            Node(
                reasoning_samples,
                ["evaluation_rankings", "validated_items", "params:evaluation"],
                "reasoning_samples",
                name="reasoning_samples",
            ),
            Node(
                training_curves,
                ["recpo_report", "sasrec_report", "sft_report"],
                "training_curves_plot",
                name="plot_training_curves",
            ),
            Node(headline_metrics, "evaluation_metrics", "headline_metrics", name="headline_metrics"),
            Node(
                curve_tables,
                ["recpo_report", "sft_report", "evaluation_metrics"],
                "training_curve_tables",
                name="training_curve_tables",
            ),
        ]
    )
