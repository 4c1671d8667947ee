"""gpu_run.py's models against `make run`'s Popularity and SASRec on the same test users (paired CIs).

gpu_run.py saves every test user's rank per model and mode with the project's user and item ids
(``rankings.parquet``: ``internal_user_id``, ``internal_target_id``, ``rank``); the baselines' ranks come
from `make run`'s ``data/07_model_output/rankings.parquet`` (test split, direct mode). Users are matched
by id and their targets must agree (the same leave-one-out split); the table gives each GPU model minus
each baseline in N@10, H@10 and MRR, with paired bootstrap 95% CIs.

  PYTHONPATH=src python benchmarks/gpu_vs_baselines.py docs/results/gpu/h200/rankings.parquet \\
      data/07_model_output/rankings.parquet
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
    """(user ids, targets, {"<model>.<mode>": ranks}) of gpu_run.py's rankings, every model in one user order."""
    first = rankings.groupby(["model", "mode"], sort=False).ngroup() == 0
    users = rankings.loc[first, "internal_user_id"].to_numpy()
    targets = rankings.loc[first, "internal_target_id"].to_numpy()
    ranks = {}
    for (model, mode), rows in rankings.groupby(["model", "mode"], sort=False):
        rows = rows.set_index("internal_user_id").loc[users]
        ranks[f"{model}.{mode}"] = rows["rank"].to_numpy()
    return users, targets, ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ranks", type=Path, help="gpu_run.py's rankings.parquet")
    parser.add_argument("rankings", type=Path, help="make run's data/07_model_output/rankings.parquet")
    args = parser.parse_args()
    user_ids, targets, saved = gpu_ranks(pd.read_parquet(args.ranks))
    baselines = baseline_ranks(pd.read_parquet(args.rankings), user_ids, targets)
    print("| difference | metric | GPU model | baseline | difference | 95% CI | users |")
    print("|---|---|---:|---:|---:|---|---:|")
    print("\n".join(comparison_rows(saved, baselines)))


if __name__ == "__main__":
    main()
