"""A GPU run's models against `make run`'s Popularity and SASRec on the same test users (paired CIs).

``python -m r2ec_pipeline.device_run`` writes every ranked user's rank per model and mode
(``<model>_rankings.parquet``: ``split``, ``user_id``, ``target_item_id``, ``rank``, the project's ids, the
rows `make run` writes); the baselines' ranks come from `make run`'s ``data/07_model_output/rankings.parquet``
(test split, direct mode). Users are matched by id and their targets must agree (the same leave-one-out
split); the table gives each GPU model minus each baseline in N@10, H@10 and MRR, with paired bootstrap
95% CIs.

  PYTHONPATH=src python benchmarks/gpu_vs_baselines.py <device_run out> data/07_model_output/rankings.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from r2ec_pipeline.metrics import per_sample
from r2ec_pipeline.reporting.statistics import paired_differences

BASELINES = ("popularity", "sasrec")
METRICS = ("ndcg_at_10", "hit_at_10", "mrr")


def baseline_ranks(rankings: pd.DataFrame, user_ids: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Each baseline's test rank of every user in ``user_ids``, in that order; refuses other targets or users."""
    ranks = {}
    for model in BASELINES:
        rows = rankings.query("split == 'test' and mode == 'direct' and model == @model").set_index("user_id")
        missing = sorted(set(user_ids.tolist()) - set(rows.index))
        if missing:
            raise ValueError(
                f"{model}: {len(missing)} of the GPU run's users have no test ranking "
                f"(first: {missing[:5]}); use a `make run` that evaluated every test user"
            )
        rows = rows.loc[user_ids]
        if not np.array_equal(rows["target_item_id"].to_numpy(), targets):
            raise ValueError(f"{model}: the targets differ from the GPU run's: not the same test split")
        ranks[model] = rows["rank"].to_numpy()
    return ranks


def comparison_rows(models: dict[str, np.ndarray], baselines: dict[str, np.ndarray]) -> list[str]:
    """One markdown row per GPU model × baseline × metric: means and the paired difference with its CI
    (``reporting.paired_differences``, as the evaluation's CIs); ranks are in the same user order."""
    rows = []
    for name, ranks in models.items():
        for baseline, other in baselines.items():
            differences = paired_differences(pd.Series(ranks), pd.Series(other), METRICS)
            for metric, d in differences.items():
                rows.append(
                    f"| {name} − {baseline} | {metric} | {per_sample(ranks, metric).mean():.4f} | "
                    f"{per_sample(other, metric).mean():.4f} | {d['difference']:+.4f} | "
                    f"[{d['low']:+.4f}, {d['high']:+.4f}] | {d['users']} |"
                )
    return rows


def gpu_ranks(rankings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(user ids, targets, {"<model>.<mode>": ranks}) of a GPU run's test rankings, every model in one user order."""
    test = rankings[rankings["split"] == "test"]
    first = test.groupby(["model", "mode"], sort=False).ngroup() == 0
    users = test.loc[first, "user_id"].to_numpy()
    targets = test.loc[first, "target_item_id"].to_numpy()
    ranks = {}
    for (model, mode), rows in test.groupby(["model", "mode"], sort=False):
        rows = rows.set_index("user_id").loc[users]
        ranks[f"{model}.{mode}"] = rows["rank"].to_numpy()
    return users, targets, ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a device_run --out folder (<model>_rankings.parquet)")
    parser.add_argument("rankings", type=Path, help="make run's data/07_model_output/rankings.parquet")
    args = parser.parse_args()
    frames = [pd.read_parquet(path) for path in sorted(args.run.glob("*_rankings.parquet"))]
    user_ids, targets, saved = gpu_ranks(pd.concat(frames, ignore_index=True))
    baselines = baseline_ranks(pd.read_parquet(args.rankings), user_ids, targets)
    print("| difference | metric | GPU model | baseline | difference | 95% CI | users |")
    print("|---|---|---:|---:|---:|---|---:|")
    print("\n".join(comparison_rows(saved, baselines)))


if __name__ == "__main__":
    main()
