"""registration: RecPO checkpoint (then a shipped one) + backbone + catalog → MLflow pyfunc → registered `r2ec`
(challenger; champion for the better one by the promotion rule)."""

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.pipelines.registration.nodes import register_model, register_shipped

# what every registered version is built and tagged from, after its checkpoint
_VERSION_INPUTS = [
    "backbone_folder",
    "validated_items",
    "validated_interactions",
    "test_samples",
    "evaluation_metrics",
    "params:data_ingestion",
    "params:prompts",
    "params:evaluation",
    "params:registration",
]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(register_model, ["recpo_model@folder", *_VERSION_INPUTS], "registered_model", name="register_model"),
            Node(
                register_shipped,
                ["shipped_models@folder", "registered_model", *_VERSION_INPUTS],
                "registered_shipped_models",
                name="register_shipped",
            ),
        ]
    )
