"""What one evaluated user costs, by history window and batch size (a table, not a test).

The evaluation stage ranks every test user in direct mode for each R²ec model and a seeded part with
greedy reasoning. Per user that is: the frozen bottom's pass (once per user for every model on the
backbone, `model/bottom_cache.py`), the adapted top layers' pass (once per model), and for reasoning a
full prompt pass plus the generated tokens. All scale with the prompt length, which the history
window (`prompts.window_size`) sets; this prints each cost per user so the CPU profile can be sized.
Prompts of window w are the test prompts (run `make run` or the prompts pipeline first) cut to their
latest w history lines: the lines' relative times are to the target, so that is what window w renders.

Reasoning's prompt pass runs the token prefix every user prompt shares (system turn and instruction) once
per batch; the table gives that against every prompt run whole, as a ratio measured in the same run.

Usage: .venv/bin/python benchmarks/evaluation_speed.py [--users 32] [--windows 20 10] [--batches 8 16]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import pandas as pd
import torch
from _common import (  # benchmarks/_common.py (the script's folder is on sys.path)
    ROOT,
    print_measures,
    trained_like_model,
)

from r2ec_pipeline.model.backbone import PACKAGED_SMOLLM2
from r2ec_pipeline.model.bottom_cache import clear_shared_caches
from r2ec_pipeline.model.evaluation import rank_both_modes, rank_without_reasoning
from r2ec_pipeline.model.generation import generate_reasoning


def cut_history(prompt: str, window: int) -> str:
    """The prompt with only its latest ``window`` history lines (lines starting with "- ")."""
    lines = prompt.split("\n")
    history = [index for index, line in enumerate(lines) if line.startswith("- ")]
    drop = set(history[: max(len(history) - window, 0)])
    return "\n".join(line for index, line in enumerate(lines) if index not in drop)


def _per_user(function, users: int) -> float:
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) / users * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=PACKAGED_SMOLLM2)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--windows", type=int, nargs="+", default=[20, 10])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--reasoning-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = pd.read_parquet(ROOT / "data/05_model_input/test_samples.parquet").head(args.users)
    model = trained_like_model(args.backbone)
    items = pd.read_parquet(ROOT / "data/05_model_input/item_prompts.parquet")
    model.item_table = torch.randn(int(items["item_id"].max()) + 1, model.lm.config.hidden_size)  # scoring cost only
    targets, histories = samples["target_item_id"].tolist(), [[] for _ in range(len(samples))]
    rows: list[tuple[str, str]] = []
    for window in args.windows:
        prompts = [cut_history(prompt, window) for prompt in samples["prompt"]]
        tokens = sum(len(model.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts) / len(prompts)
        rows.append((f"window {window}: prompt tokens (mean)", f"{tokens:.0f}"))
        for batch in args.batches:

            def direct(cached: bool) -> None:
                model.bottom_cache_mb = 2048 if cached else 0
                rank_without_reasoning(model, prompts, targets, histories, batch, progress=False)

            clear_shared_caches()
            uncached = _per_user(lambda: direct(False), len(prompts))
            filling = _per_user(lambda: direct(True), len(prompts))
            top = _per_user(lambda: direct(True), len(prompts))
            both = _per_user(
                lambda: rank_both_modes(
                    model, prompts, targets, histories, args.reasoning_tokens, batch, progress=False
                ),
                len(prompts),
            )

            def generate(share_prefix: bool) -> None:  # what rank_both_modes runs per batch, in its length order
                ordered = sorted(prompts, key=len)
                for start in range(0, len(ordered), batch):
                    generate_reasoning(
                        model,
                        ordered[start : start + batch],
                        args.reasoning_tokens,
                        direct=True,
                        share_prefix=share_prefix,
                    )

            generate_reasoning(model, prompts[:batch], 4, direct=True)  # warm-up: neither timing pays first-call costs
            unshared = _per_user(lambda: generate(False), len(prompts))
            shared = _per_user(lambda: generate(True), len(prompts))
            rows += [
                (
                    f"window {window}, batch {batch}: greedy reasoning + direct state, every prompt whole",
                    f"{unshared:.0f} ms/user",
                ),
                (
                    f"window {window}, batch {batch}: the same, the prompts' common prefix run once",
                    f"{shared:.0f} ms/user ({unshared / shared:.2f}x)",
                ),
            ]
            rows += [
                (f"window {window}, batch {batch}: direct, uncached", f"{uncached:.0f} ms/user"),
                (f"window {window}, batch {batch}: direct, filling the bottom cache", f"{filling:.0f} ms/user"),
                (f"window {window}, batch {batch}: direct, bottom cached (top 8 layers)", f"{top:.0f} ms/user"),
                (
                    f"window {window}, batch {batch}: both modes, {args.reasoning_tokens} reasoning tokens",
                    f"{both:.0f} ms/user",
                ),
            ]
    rows.append(("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"))
    clear_shared_caches()
    print(f"backbone {args.backbone}, {len(samples)} test users, {args.threads} threads, torch {torch.__version__}")
    print_measures(rows)


if __name__ == "__main__":
    main()
