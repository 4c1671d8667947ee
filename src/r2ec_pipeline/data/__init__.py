"""Data protocol shared by pipelines, training and serving: samples, splits, prompts (spec §1–2)."""
