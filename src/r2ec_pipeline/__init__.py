"""r2ec-pipeline: R²ec (a dual-head reasoning + recommendation LLM) trained with RecPO, as a Kedro project."""

__version__ = "0.1.0"
