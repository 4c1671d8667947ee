"""SFT warm-start of the rec head: the paper's "w/o reasoning" model and the RecPO start point.

Its ``pipeline.py`` builds it (``create_pipeline``); ``nodes.py`` imports without Kedro."""
