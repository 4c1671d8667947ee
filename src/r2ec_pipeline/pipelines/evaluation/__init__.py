"""evaluation: every model ranked over the whole catalog on validation and test (method §6).

Its ``pipeline.py`` builds it (``create_pipeline``); ``nodes.py`` imports without Kedro."""
