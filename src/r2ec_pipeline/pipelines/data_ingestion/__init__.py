"""Offline ingestion of MovieLens-100k (embedded) or an Amazon Reviews 2023 category (local files).

Its ``pipeline.py`` builds it (``create_pipeline``); ``nodes.py`` imports without Kedro."""
