"""data_validation: interactions + items → report and Data Docs (always) → validated_* (only when every rule held)."""

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.pipelines.data_validation.nodes import (
    enforce_report,
    validate_tables,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=validate_tables,
                inputs=["interactions", "items", "params:data_validation"],
                outputs=["validation_report", "validation_data_docs"],
                name="validate_tables",
            ),
            Node(
                func=enforce_report,
                inputs=["validation_report", "interactions", "items"],
                outputs=["validated_interactions", "validated_items"],
                name="enforce_validation",
            ),
        ]
    )
