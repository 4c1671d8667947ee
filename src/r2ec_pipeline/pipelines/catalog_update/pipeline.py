"""catalog_update: new item rows → GX rules → encoded with the registered model → a new version of `r2ec`."""

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.pipelines.catalog_update.nodes import (
    accept_new_items,
    check_new_items,
    update_catalog,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                check_new_items,
                ["new_items", "catalog_update_source", "params:catalog_update", "params:data_validation"],
                ["matched_new_items", "catalog_update_validation", "catalog_update_data_docs"],
                name="check_new_items",
            ),
            Node(
                accept_new_items,
                ["catalog_update_validation", "matched_new_items"],
                "accepted_new_items",
                name="accept_new_items",
            ),
            Node(
                update_catalog,
                [
                    "accepted_new_items",
                    "catalog_update_source",
                    "params:prompts",
                    "params:model",
                    "params:registration",
                ],
                ["updated_model", "catalog_update_report"],
                name="update_catalog",
            ),
        ]
    )
