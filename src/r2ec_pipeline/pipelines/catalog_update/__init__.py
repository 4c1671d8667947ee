"""catalog_update: new items added to a registered model without retraining, registered as a new version.

Its ``pipeline.py`` builds it (``create_pipeline``); ``nodes.py`` imports without Kedro."""
