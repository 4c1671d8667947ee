"""registration: RecPO checkpoint + backbone + catalog → MLflow pyfunc → registered `r2ec` (challenger / champion)."""

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.pipelines.registration.nodes import register_model


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
        ]
    )
