"""cold_start: the newest items held out of training, added by a catalog update, ranked for the users who chose them.

Its ``pipeline.py`` builds it (``create_pipeline``); ``nodes.py`` imports without Kedro."""
