"""baselines: training sequences → Popularity counts and an early-stopped SASRec (evaluated by `evaluation`)."""

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.pipelines.baselines.nodes import (
    fit_popularity,
    train_sasrec_model,
    training_sequences,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                training_sequences,
                ["validated_interactions", "train_samples"],
                "baseline_sequences",
                name="training_sequences",
            ),
            Node(fit_popularity, ["baseline_sequences", "validated_items"], "popularity_counts", name="fit_popularity"),
            Node(
                train_sasrec_model,
                [
                    "baseline_sequences",
                    "valid_samples",
                    "validated_interactions",
                    "validated_items",
                    "params:baselines",
                ],
                ["sasrec_model", "sasrec_history", "sasrec_report"],
                name="train_sasrec",
            ),
        ]
    )
