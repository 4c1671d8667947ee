"""registration: RecPO checkpoint + backbone + catalog → MLflow pyfunc → registered `r2ec` (challenger / champion)."""

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.pipelines.registration.nodes import register_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(register_model,
                 ["recpo_model@folder", "backbone_folder", "validated_items", "test_samples", "evaluation_metrics",
                  "params:prompts", "params:registration"],
                 "registration_report", name="register_model"),
        ]
    )
