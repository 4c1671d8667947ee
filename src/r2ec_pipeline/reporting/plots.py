"""Bar charts of the test metrics and of the ablation variants (PNG files for DVC and MLflow)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from r2ec_pipeline.reporting.tables import results_table  # noqa: E402


def metrics_bar_chart(metrics: dict[str, Any], split: str = "test") -> plt.Figure:
    """Hit@10 and NDCG@10 per model and mode on ``split``."""
    table = results_table(metrics, split)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, name in zip(axes, ("hit_at_10", "ndcg_at_10"), strict=True):
        values = table[name] if name in table else pd.Series(dtype=float)
        axis.barh(table["model"], values, color="tab:blue")
        axis.invert_yaxis()
        axis.set_title(f"{name.replace('_at_', '@').upper()} ({split}, {metrics.get('users', {}).get(split, 0)} users)")
        for y, value in enumerate(values):
            axis.text(value, y, f" {value:.3f}", va="center", fontsize=8)
    figure.tight_layout()
    return figure


def variant_bar_chart(table: pd.DataFrame) -> plt.Figure:
    """N@10 and H@10 of every ablation variant, one bar per mode, on the first split in ``table``."""
    split = table["split"].iloc[0] if len(table) else "test"
    rows = table[table["split"] == split]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4))
    for axis, name in zip(axes, ("ndcg_at_10", "hit_at_10"), strict=True):
        wide = rows.pivot(index="variant", columns="mode", values=name).reindex(rows["variant"].unique())
        wide.plot.barh(ax=axis)
        axis.invert_yaxis()
        axis.set_title(f"{name.replace('_at_', '@').upper()} by RecPO variant ({split})")
    figure.tight_layout()
    return figure
