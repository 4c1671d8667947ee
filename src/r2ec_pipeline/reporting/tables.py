"""Row labels, flat names and tables of the evaluation's metrics (what nodes log and `make run` prints)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

MODEL_LABELS = {
    "popularity": "Pop",
    "sasrec": "SASRec",
    "zero_shot": "R²ec zero-shot",
    "sft": "SFT",
    "recpo": "RecPO",
    "shipped": "shipped checkpoint",
}
TABLE_METRICS = ("hit_at_5", "ndcg_at_5", "hit_at_10", "ndcg_at_10", "hit_at_20", "ndcg_at_20", "mrr")
R2EC_MODELS = ("zero_shot", "sft", "recpo", "shipped")
CI_METRICS = ("ndcg_at_10", "hit_at_10", "mrr")
COLD_START_METRICS = ("hit_at_10", "ndcg_at_10", "hit_at_20", "ndcg_at_20", "mrr", "median_rank")
COLD_START_LABELS = {
    "cold": "trained without them, added by a catalog update",
    "known": "in the catalog at training time",
}


def model_label(model: str, mode: str) -> str:
    """A row's label in the tables: the baselines have one mode, the R²ec models name theirs."""
    return MODEL_LABELS[model] + ("" if model in ("popularity", "sasrec") else f" ({mode})")


def _row_label(key: str) -> str:
    return model_label(*key.split("."))


def comparisons_table(comparisons: dict[str, Any], label: Callable[[str], str] = _row_label) -> pd.DataFrame:
    """One row per difference (``"<a>-<b>"``, each named by ``label``): users, then each metric's difference
    with its 95% CI."""
    rows = []
    for name, values in comparisons.items():
        a, b = name.split("-")
        first = next(iter(values.values()))
        rows.append(
            {
                "difference": f"{label(a)} − {label(b)}",
                "users": first["users"],
                **{
                    f"Δ {metric}": f"{v['difference']:+.4f} [{v['low']:+.4f}, {v['high']:+.4f}]"
                    for metric, v in values.items()
                },
            }
        )
    return pd.DataFrame(rows)


def lookup(metrics: dict[str, Any], key: str) -> float | None:
    """The value at a dotted key (``valid.recpo.reasoning.ndcg_at_10``), or None if absent."""
    node: Any = metrics
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) else None


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Dotted names → values, for MLflow."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, int | float):
            flat[name] = float(value)
    return flat


def results_table(metrics: dict[str, Any], split: str = "test") -> pd.DataFrame:
    """One row per model and mode (baselines first): users ranked, then the usual metric columns."""
    rows = []
    for model in MODEL_LABELS:
        for mode, values in (metrics.get(split, {}).get(model) or {}).items():
            rows.append(
                {
                    "model": model_label(model, mode),
                    "users": values.get("users"),
                    **{m: values.get(m) for m in TABLE_METRICS if m in values},
                }
            )
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub markdown table with 4 decimals."""
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    body = "".join(
        "| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |\n"
        for row in table.itertuples(index=False)
    )
    return header + body


def _cold_start_label(key: str) -> str:
    setting, model, mode = key.split(".")
    return f"{model_label(model, mode)}, {setting}"


def cold_start_tables(report: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cold-start report as two tables: every model by setting and mode, and the paired differences."""
    rows = [
        {
            "model": model_label(model, mode),
            "held-out items": COLD_START_LABELS[setting],
            "users": values["users"],
            **{name: round(values[name], 4) for name in COLD_START_METRICS if name in values},
        }
        for setting, models in report["metrics"].items()
        for model, modes in models.items()
        for mode, values in modes.items()
    ]
    return pd.DataFrame(rows), comparisons_table(report["comparisons"], _cold_start_label)
