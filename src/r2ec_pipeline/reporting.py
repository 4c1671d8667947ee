"""Metrics tables and plots from the evaluation stage's outputs (used by nodes and by `make run`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from r2ec_pipeline.metrics import (  # noqa: E402
    paired_bootstrap,
    per_sample,
    ranking_metrics,
)

MODEL_LABELS = {"popularity": "Pop", "sasrec": "SASRec", "zero_shot": "R²ec zero-shot", "sft": "SFT", "recpo": "RecPO"}
TABLE_METRICS = ("hit_at_5", "ndcg_at_5", "hit_at_10", "ndcg_at_10", "hit_at_20", "ndcg_at_20", "mrr")
R2EC_MODELS = ("zero_shot", "sft", "recpo")
CI_METRICS = ("ndcg_at_10", "hit_at_10")


def model_label(model: str, mode: str) -> str:
    """A row's label in the tables: the baselines have one mode, the R²ec models name theirs."""
    return MODEL_LABELS[model] + ("" if model in ("popularity", "sasrec") else f" ({mode})")


def metrics_by_model(rankings: pd.DataFrame, ks: Iterable[int]) -> dict[str, Any]:
    """``{split: {model: {mode: {metric: value, "users": n}}}}`` plus ``users`` (distinct users ranked) per split."""
    ks = list(ks)
    result: dict[str, Any] = {}
    for (split, model, mode), group in rankings.groupby(["split", "model", "mode"], sort=False):
        result.setdefault(split, {}).setdefault(model, {})[mode] = {
            **ranking_metrics(group["rank"], ks),
            "users": int(group["user_id"].nunique()),
        }
    result["users"] = rankings.groupby("split")["user_id"].nunique().astype(int).to_dict() if len(rankings) else {}
    return result


def _ranks(rankings: pd.DataFrame, split: str, model: str, mode: str) -> pd.Series:
    rows = rankings[(rankings["split"] == split) & (rankings["model"] == model) & (rankings["mode"] == mode)]
    return rows.set_index(["user_id", "target_item_id"])["rank"]


def comparison_pairs(metrics: dict[str, Any], split: str) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """The differences that say whether each stage learns: SFT − zero-shot, RecPO − SFT (per mode),
    reasoning − direct (per R²ec model), and the best R²ec row (test N@10) − Pop and − SASRec."""
    present = {(model, mode) for model, modes in metrics.get(split, {}).items() for mode in modes}
    pairs = [
        ((later, mode), (earlier, mode))
        for mode in ("direct", "reasoning")
        for later, earlier in (("sft", "zero_shot"), ("recpo", "sft"))
    ]
    pairs += [((model, "reasoning"), (model, "direct")) for model in R2EC_MODELS]
    r2ec = [(model, mode) for model in R2EC_MODELS for mode in ("direct", "reasoning") if (model, mode) in present]
    if r2ec:  # ties go to the first row in this fixed order, so the choice is the same in every run
        best = max(r2ec, key=lambda row: metrics[split][row[0]][row[1]]["ndcg_at_10"])
        pairs += [(best, ("popularity", "direct")), (best, ("sasrec", "direct"))]
    return [(a, b) for a, b in pairs if a in present and b in present]


def paired_differences(
    a: pd.Series, b: pd.Series, names: Iterable[str] = CI_METRICS, resamples: int = 2000, seed: int = 0
) -> dict[str, dict[str, float]] | None:
    """Per metric, the paired bootstrap 95% CI of mean(a) − mean(b) over the users (index) both rank series
    share; None when they share none."""
    joined = pd.concat([a, b], axis=1, join="inner", keys=["a", "b"])
    if joined.empty:
        return None
    return {
        name: paired_bootstrap(per_sample(joined["a"], name), per_sample(joined["b"], name), resamples, seed=seed)
        for name in names
    }


def paired_comparisons(
    rankings: pd.DataFrame,
    metrics: dict[str, Any],
    split: str = "test",
    names: Iterable[str] = CI_METRICS,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"<model>.<mode>-<model>.<mode>": {metric: {difference, low, high, users}}}``: paired bootstrap 95% CIs
    of each difference in ``comparison_pairs``, on the users both rows ranked (the same resampled users for both)."""
    result: dict[str, Any] = {}
    for a, b in comparison_pairs(metrics, split):
        differences = paired_differences(
            _ranks(rankings, split, *a), _ranks(rankings, split, *b), names, resamples, seed
        )
        if differences is not None:
            result[f"{a[0]}.{a[1]}-{b[0]}.{b[1]}"] = differences
    return result


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


def print_summary(metrics_path: str | Path, registration_path: str | Path) -> str:
    """What `make run` prints at the end: the test table and the registered model version."""
    metrics = json.loads(Path(metrics_path).read_text())
    users = metrics.get("users", {})
    lines = [
        f"Test metrics ({users.get('test', '?')} test users, full ranking over the catalog, history masked):",
        markdown_table(results_table(metrics, "test")),
    ]
    if metrics.get("comparisons", {}).get("test"):
        lines += [
            "Paired differences on the same test users, 95% bootstrap CIs:",
            markdown_table(comparisons_table(metrics["comparisons"]["test"])),
        ]
    if Path(registration_path).is_file():
        registration = json.loads(Path(registration_path).read_text())
        lines.append(
            f"Registered model: {registration['model_name']} version {registration['version']} "
            f"(aliases: {', '.join(registration['aliases']) or 'none'}); {registration['promotion']}"
        )
    return "\n".join(lines)


COLD_START_METRICS = ("hit_at_10", "ndcg_at_10", "hit_at_20", "ndcg_at_20", "mrr", "median_rank")
COLD_START_LABELS = {
    "cold": "trained without them, added by a catalog update",
    "known": "in the catalog at training time",
}


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


def print_cold_start(report_path: str | Path) -> str:
    """What `make cold-start` prints: the held-out items, the update and both tables."""
    report = json.loads(Path(report_path).read_text())
    held, update = report["held_out"], report["update"]
    results, differences = cold_start_tables(report)
    return "\n".join(
        [
            f"Cold start: the newest {held['items']} of {held['catalog_items']} items ({held['fraction']:.0%} by first "
            f"interaction) held out of training and added by a catalog update ({update['encode_seconds']:.1f} s to "
            f"encode them); {report['users']} test users whose target is one of them, full ranking, history masked:",
            markdown_table(results),
            "Paired differences on the same users, 95% bootstrap CIs:",
            markdown_table(differences),
        ]
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--cold-start"]:
        print(print_cold_start("data/08_reporting/cold_start.json"))
    else:
        print(print_summary("data/08_reporting/metrics.json", "data/08_reporting/registration.json"))
