"""ablations: RecPO variants (reward, advantage, relabelling, β) trained and ranked side by side.

Its ``pipeline.py`` builds it (``create_pipeline``); ``nodes.py`` imports without Kedro."""
