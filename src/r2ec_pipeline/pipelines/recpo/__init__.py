"""recpo: RecPO training of both heads from the SFT checkpoint (method §5).

Its ``pipeline.py`` builds it (``create_pipeline``); ``nodes.py`` imports without Kedro."""
