"""Recommendation latency at batch 1: R²ec's one scoring step vs decoding item titles (prints a table).

On the same test users, backbone and checkpoint:
  (a) R²ec without reasoning: encode prompt + answer tag, score the whole catalog, top-10
  (b) R²ec with T greedy reasoning tokens: generation, then scoring (timed apart)
  (c) generative baseline: constrained beam search (10 beams, prefix trie over item titles) → top-10,
      ours (stops as soon as no live beam can enter the top 10), and (c') the same with transformers'
      `generate(num_beams=10, prefix_allowed_tokens_fn=...)`, as BIGRec/D3-style recommenders decode
Median and p95 per user, then the ratios (c)/(a), (c)/(b) and scoring's share of (b).
Goals: (c)/(a) ≥ 20 and scoring ≤ 5 % of (b).

Usage: .venv/bin/python benchmarks/latency.py [--checkpoint data/06_models/recpo] [--users 20] [--tokens 32]
Needs the outputs of `make run` (prompts and a checkpoint). One model job at a time on 2 cores.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import ROOT, timed_call  # benchmarks/_common.py (the script's folder is on sys.path)

from r2ec_pipeline.baselines.generative import build_title_trie, constrained_beam_search
from r2ec_pipeline.data.samples import seeded_subset
from r2ec_pipeline.model.dual_head_io import load_dual_head
from r2ec_pipeline.model.generation import generate_reasoning
from r2ec_pipeline.model.scoring import top_k


def _stats(values: list[float]) -> tuple[float, float]:
    return float(np.median(values)) * 1000, float(np.percentile(values, 95)) * 1000


def hf_constrained_generate(model, prompt: str, trie, beams: int, max_depth: int):
    """transformers' beam search restricted to the title trie; finished titles end with EOS."""
    batch = model.tokenize([prompt])
    start, eos = batch["input_ids"].shape[1], model.tokenizer.eos_token_id

    def allowed(_: int, ids: torch.Tensor) -> list[int]:
        node = trie
        for token in ids[start:].tolist():
            if token not in node.children:
                return [eos]
            node = node.children[token]
        return list(node.children) if node.children else [eos]

    return model.lm.generate(
        **batch,
        num_beams=beams,
        num_return_sequences=beams,
        do_sample=False,
        max_new_tokens=max_depth + 1,
        prefix_allowed_tokens_fn=allowed,
        eos_token_id=eos,
        pad_token_id=model.tokenizer.pad_token_id,
        early_stopping=True,
    )


def _depth(node) -> int:
    return 1 + max((_depth(child) for child in node.children.values()), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "data/06_models/recpo"))
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=32, help="reasoning tokens T of (b)")
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_dual_head(args.checkpoint, ROOT / "data/06_models/backbones")
    model.lm.eval()
    items = pd.read_parquet(ROOT / "data/03_primary/items.parquet")
    samples = seeded_subset(pd.read_parquet(ROOT / "data/05_model_input/test_samples.parquet"), args.users, 0)
    trie = build_title_trie(model, items["item_id"].tolist(), items["title"].tolist())
    tag = model.config.answer_tag
    depth = _depth(trie) - 1
    rows: dict[str, list[float]] = {name: [] for name in ("a", "b", "b_generate", "b_score", "c", "c_hf")}
    generated: list[int] = []
    with torch.no_grad():
        for index, sample in enumerate(samples.itertuples(index=False)):
            history = [list(sample.history_item_ids)]
            seconds_a, _ = timed_call(lambda: top_k(model.score(model.encode([sample.prompt + tag]), history), 10))
            seconds_gen, generation = timed_call(lambda: generate_reasoning(model, [sample.prompt], args.tokens))
            seconds_score, _ = timed_call(lambda: top_k(model.score(generation.final_hidden, history), 10))
            seconds_c, found = timed_call(lambda: constrained_beam_search(model, sample.prompt + tag, trie, args.beams))
            seconds_hf, _ = timed_call(
                lambda: hf_constrained_generate(model, sample.prompt + tag, trie, args.beams, depth)
            )
            if index == 0:
                continue  # warm-up: first calls allocate
            rows["a"].append(seconds_a)
            rows["b_generate"].append(seconds_gen)
            rows["b_score"].append(seconds_score)
            rows["b"].append(seconds_gen + seconds_score)
            rows["c"].append(seconds_c)
            rows["c_hf"].append(seconds_hf)
            generated.append(len(generation.token_ids[0]))
            assert found, "beam search found no item"

    labels = {
        "a": "(a) R²ec, no reasoning",
        "b": f"(b) R²ec, ≤{args.tokens} reasoning tokens",
        "b_generate": "    (b) generation",
        "b_score": "    (b) scoring + top-10",
        "c": f"(c) constrained beam search, {args.beams} beams",
        "c_hf": f"(c') transformers generate, {args.beams} beams + trie",
    }
    print(
        f"\nLatency per user at batch 1, {len(rows['a'])} test users, {torch.get_num_threads()} threads, "
        f"checkpoint {Path(args.checkpoint).name}, {len(items)} items; (b) generated "
        f"{np.mean(generated):.1f} tokens on average\n"
    )
    print(f"| {'method':<46} | median ms | p95 ms |\n|{'-' * 48}|----------:|-------:|")
    for key, label in labels.items():
        median, p95 = _stats(rows[key])
        print(f"| {label:<46} | {median:9.1f} | {p95:6.1f} |")
    a, b, c, c_hf = (np.median(rows[key]) for key in ("a", "b", "c", "c_hf"))
    share = np.median(rows["b_score"]) / b
    print(
        f"\n(c)/(a) = {c / a:.1f}x (goal ≥ 20)   (c)/(b) = {c / b:.2f}x   (c')/(a) = {c_hf / a:.1f}x   "
        f"(c')/(b) = {c_hf / b:.2f}x   scoring share of (b) = {share:.2%} (goal ≤ 5 %)"
    )
    print(f"title trie: {depth} tokens deep at most; prompt prefill is part of (a), (b) and (c) alike")


if __name__ == "__main__":
    main()
