"""data_ingestion: raw source (MovieLens-100k wheel or Amazon Reviews 2023 files) → canonical tables."""

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.pipelines.data_ingestion.nodes import ingest


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=ingest,
                inputs=["raw_movielens_100k", "raw_amazon_2023", "params:data_ingestion"],
                outputs=["interactions", "items", "ingestion_report"],
                name="ingest_source",
            )
        ]
    )
