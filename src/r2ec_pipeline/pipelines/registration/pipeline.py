"""registration: RecPO checkpoint (then a shipped one) + backbone + catalog → MLflow pyfunc → registered `r2ec`
(challenger; champion for the better one by the promotion rule)."""

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.pipelines.registration.nodes import register_model, register_shipped


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                register_model,
                [
                    "recpo_model@folder",
                    "backbone_folder",
                    "validated_items",
                    "validated_interactions",
                    "test_samples",
                    "evaluation_metrics",
                    "params:data_ingestion",
                    "params:prompts",
                    "params:evaluation",
                    "params:registration",
                ],
                "registered_model",
                name="register_model",
            ),
            Node(
                register_shipped,
                [
                    "shipped_models@folder",
                    "registered_model",
                    "backbone_folder",
                    "validated_items",
                    "validated_interactions",
                    "test_samples",
                    "evaluation_metrics",
                    "params:data_ingestion",
                    "params:prompts",
                    "params:evaluation",
                    "params:registration",
                ],
                "registered_shipped_models",
                name="register_shipped",
            ),
        ]
    )
