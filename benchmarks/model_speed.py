"""Speed and memory of the dual-head model on this machine: prints a table (not a test).

Measures, on the prompts stage's outputs (run `make run` first):
  - item-table build time for the whole catalog (1,682 items on ML-100k)
  - per-user scoring latency without reasoning (encode prompt + answer tag, score, top-10) at batch 1 and 32
  - reasoning generation throughput (greedy, KV cache) in generated tokens/s at batch 1, 4 and 8
  - peak resident memory of the process

Usage: .venv/bin/python benchmarks/model_speed.py [--backbone SPEC] [--repeats 5] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import pandas as pd
import torch
from _common import CACHE, ROOT, print_measures  # benchmarks/_common.py (the script's folder is on sys.path)

from r2ec_pipeline.config import AdapterParams
from r2ec_pipeline.model.adapters import attach_adapters
from r2ec_pipeline.model.backbone import (
    PACKAGED_SMOLLM2,
    load_causal_lm,
    load_tokenizer,
)
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel
from r2ec_pipeline.model.generation import generate_reasoning
from r2ec_pipeline.model.scoring import top_k


def _timed(function, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=PACKAGED_SMOLLM2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    items = pd.read_parquet(ROOT / "data/05_model_input/item_prompts.parquet")
    users = pd.read_parquet(ROOT / "data/05_model_input/valid_samples.parquet")
    lm = attach_adapters(load_causal_lm(args.backbone, CACHE), AdapterParams(top_layers=8)).eval()
    model = R2ecModel(lm, load_tokenizer(args.backbone, CACHE), DualHeadConfig(backbone=args.backbone)).eval()
    model.bottom_cache_mb = (
        0  # the plain path, comparable across machines and runs (benchmarks/bottom_cache.py: cached)
    )
    rows: list[tuple[str, str]] = []

    started = time.perf_counter()
    model.build_item_table(items["item_id"].tolist(), items["prompt"].tolist(), batch_size=32, progress=False)
    rows.append((f"item table, {len(items)} items (batch 32)", f"{time.perf_counter() - started:.1f} s"))

    for batch in (1, 32):
        prompts = users["prompt"].tolist()[:batch]

        def score_batch(prompts=prompts) -> None:
            with torch.no_grad():
                top_k(model.score(model.encode_shared_prefix(model.user_texts(prompts))), 10)

        seconds = _timed(score_batch, args.repeats)
        per_user = statistics.median(seconds) / batch
        rows.append((f"scoring without reasoning, batch {batch}", f"{per_user * 1000:.0f} ms/user (median)"))

    for batch in (1, 4, 8):
        prompts = users["prompt"].tolist()[:batch]
        produced: list[int] = []

        def generate(prompts=prompts, produced=produced) -> None:
            result = generate_reasoning(model, prompts, max_new_tokens=args.new_tokens)
            produced.append(sum(len(tokens) for tokens in result.token_ids))

        seconds = _timed(generate, max(1, args.repeats // 2))
        rate = sum(produced) / sum(seconds)
        rows.append((f"generation, batch {batch} (≤{args.new_tokens} new tokens)", f"{rate:.1f} tokens/s"))

    rows.append(("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"))
    print(f"backbone {args.backbone}, {args.threads} threads, torch {torch.__version__}")
    print_measures(rows)


if __name__ == "__main__":
    main()
