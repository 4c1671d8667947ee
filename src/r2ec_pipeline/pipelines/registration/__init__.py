"""registration: the RecPO model as an MLflow pyfunc, registered as challenger, promoted if better.

Its ``pipeline.py`` builds it (``create_pipeline``); ``nodes.py`` imports without Kedro."""
