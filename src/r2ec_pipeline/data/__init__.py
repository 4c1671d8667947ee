"""Data protocol shared by pipelines, training and serving: samples, splits, prompts (method §1–2)."""
