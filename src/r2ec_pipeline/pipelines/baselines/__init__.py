"""baselines: Popularity and SASRec, trained on the training split.

Its ``pipeline.py`` builds it (``create_pipeline``); ``nodes.py`` imports without Kedro."""
