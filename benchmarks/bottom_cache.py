"""Frozen-bottom cache: item-table refresh and direct-mode ranking with and without it (a table, not a test).

With adapters on the top 8 of SmolLM2's 30 layers (the CPU profile), the bottom 22 layers' output per
text is computed once and reused. Measured on the prompts stage's outputs (run `make run` first):
  - whole item-table build: uncached; cached, first time (fills the cache); cached refresh after the
    adapters moved (what every RecPO validation and SFT table build pays)
  - direct-mode ranking of ``--users`` test users: uncached; cached, by a second model on the same
    backbone (the evaluation stage's SFT → RecPO), with the largest score difference to the uncached path
  - the cache's size and the process's peak RSS

Usage: .venv/bin/python benchmarks/bottom_cache.py [--users 64] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import resource

import pandas as pd
import torch
from _common import (  # benchmarks/_common.py (the script's folder is on sys.path)
    ROOT,
    print_measures,
    timed_call,
    trained_like_model,
)

from r2ec_pipeline.model.backbone import PACKAGED_SMOLLM2
from r2ec_pipeline.model.bottom_cache import clear_shared_caches
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.evaluation import rank_without_reasoning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=PACKAGED_SMOLLM2)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    items = pd.read_parquet(ROOT / "data/05_model_input/item_prompts.parquet")
    users = pd.read_parquet(ROOT / "data/05_model_input/test_samples.parquet").head(args.users)
    ids, prompts = items["item_id"].tolist(), items["prompt"].tolist()
    first, second = trained_like_model(args.backbone, 0), trained_like_model(args.backbone, 1)
    rows: list[tuple[str, str]] = []

    def table(model: R2ecModel) -> torch.Tensor:
        return model.build_item_table(ids, prompts, batch_size=32, progress=False).clone()

    def ranking(model: R2ecModel):
        return rank_without_reasoning(
            model,
            users["prompt"].tolist(),
            users["target_item_id"].tolist(),
            [[] for _ in range(len(users))],
            args.batch,
            progress=False,
        )

    first.bottom_cache_mb = 0
    plain, plain_table = timed_call(lambda: table(first))
    first.bottom_cache_mb = 2048
    filling, _ = timed_call(lambda: table(first))
    second.bottom_cache_mb = 2048
    refresh, cached_table = timed_call(lambda: table(second))
    second.bottom_cache_mb = 0
    expected_table = table(second)
    rows += [
        (f"item table, {len(ids)} items: uncached", f"{plain:.1f} s"),
        ("item table: cached, first build (fills the cache)", f"{filling:.1f} s"),
        ("item table: cached refresh, adapters moved", f"{refresh:.1f} s ({plain / refresh:.2f}× faster)"),
        ("item table: largest difference to uncached", f"{(cached_table - expected_table).abs().max():.2e}"),
    ]

    first.build_item_table(ids, prompts, batch_size=32, progress=False)
    first.bottom_cache_mb, second.bottom_cache_mb = 0, 0
    second.item_table = first.item_table
    uncached, reference = timed_call(lambda: ranking(second))
    first.bottom_cache_mb, second.bottom_cache_mb = 2048, 2048
    fill, _ = timed_call(lambda: ranking(first))  # the first model fills the cache
    cached, result = timed_call(lambda: ranking(second))  # the second reuses it
    count = len(users)
    rows += [
        (f"direct ranking, {count} users (batch {args.batch}): uncached", f"{uncached / count * 1000:.0f} ms/user"),
        ("direct ranking: first model, filling the cache", f"{fill / count * 1000:.0f} ms/user"),
        (
            "direct ranking: second model, cached",
            f"{cached / count * 1000:.0f} ms/user ({uncached / cached:.2f}× faster)",
        ),
        ("direct ranking: same ranks as uncached", str(bool((result.ranks == reference.ranks).all()))),
    ]
    _, store = second._bottom_cache()
    rows += [
        ("cache", f"{len(store)} texts, {store.bytes / 2**20:.0f} MB"),
        ("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"),
    ]
    clear_shared_caches()
    print(f"backbone {args.backbone}, {args.threads} threads, torch {torch.__version__}")
    print_measures(rows)


if __name__ == "__main__":
    main()
