"""One package per Kedro pipeline: ``nodes.py`` (pure functions) and ``pipeline.py`` (wiring, the only
module that imports Kedro); ``shared/`` holds the node functions several pipelines use."""
