"""Can SFT fit? The CPU-profile recipe on a fixed handful of training samples, many epochs (a table).

Gradients must reach the rec head for SFT to learn anything. This trains the `conf/base` model and SFT
settings (adapters on the top layers, lr, τ, batch size, negatives) on ``--samples`` fixed training
samples for ``--steps`` steps and ranks those same samples (full catalog, whole earlier history
masked) every ``--eval-every`` steps: training-set N@10 / H@10 should climb far above zero-shot and
the InfoNCE loss fall well below chance (ln of the softmax width). Reads the prompts stage's outputs
(run `make run` or `kedro run --pipelines data_ingestion,data_validation,prompts` first).

Usage: .venv/bin/python benchmarks/sft_fit.py [--samples 64] [--steps 64] [--eval-every 16]
       [--params sft.softmax=catalog,model.similarity_temperature=0.05]   (Kedro's --params syntax)
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time

import numpy as np
import pandas as pd
import torch
import yaml
from _common import CACHE, ROOT, print_measures  # benchmarks/_common.py (the script's folder is on sys.path)
from kedro.config import OmegaConfigLoader

from r2ec_pipeline.config import parse_block
from r2ec_pipeline.data.samples import mask_lists
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.evaluation import evaluate_without_reasoning
from r2ec_pipeline.model.factory import build_dual_head
from r2ec_pipeline.model.sft import train_sft


def base_parameters() -> dict:
    """conf/base parameters, resolved as Kedro resolves them (globals included)."""
    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="base")
    return loader["parameters"]


def with_overrides(params: dict, overrides: str) -> dict:
    """``block.key=value,...`` (values read as YAML; nested keys with dots) applied to ``params``."""
    for item in filter(None, overrides.split(",")):
        path, _, value = item.partition("=")
        *parents, key = path.split(".")
        node = params
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = yaml.safe_load(value)
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--params", default="", help="overrides of conf/base: block.key=value,...")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = with_overrides(base_parameters(), args.params)
    model_config, sft = parse_block("model", params["model"]), parse_block("sft", params["sft"])
    data = ROOT / "data"
    train = pd.read_parquet(data / "05_model_input/train_samples.parquet")
    fixed = train.iloc[np.random.RandomState(args.seed).permutation(len(train))[: args.samples]]
    items = pd.read_parquet(data / "05_model_input/item_prompts.parquet")
    interactions = pd.read_parquet(data / "03_primary/interactions.parquet")
    item_ids, item_texts = items["item_id"].astype(int).tolist(), items["prompt"].tolist()
    prompts, targets = fixed["prompt"].tolist(), fixed["target_item_id"].astype(int).tolist()
    masks = mask_lists(fixed, interactions, "full")
    model = build_dual_head(
        load_causal_lm(model_config.backbone, CACHE),
        load_tokenizer(model_config.backbone, CACHE),
        model_config,
        parse_block("prompts", params["prompts"]).answer_tag,
    )

    def evaluate(current) -> dict[str, float]:
        metrics = evaluate_without_reasoning(
            current, prompts, targets, masks, item_ids, item_texts, batch_size=model_config.encode_batch_size
        )
        print(f"  training-set N@10 {metrics['ndcg_at_10']:.3f}  H@10 {metrics['hit_at_10']:.3f}", flush=True)
        return metrics

    settings = sft.model_copy(update={"steps": args.steps, "eval_every": args.eval_every, "seed": args.seed})
    started = time.perf_counter()
    result = train_sft(
        model, prompts, targets, dict(zip(item_ids, item_texts, strict=True)), evaluate, settings, histories=masks
    )
    seconds = time.perf_counter() - started
    losses = [point["value"] for point in result.history["train.loss"]]
    curve = [(point["step"], point["value"]) for point in result.history["valid.ndcg_at_10"]]
    width = (
        len(item_ids) if settings.softmax == "catalog" else min(settings.batch_size, args.samples) + settings.negatives
    )
    rows = [
        (
            "samples × steps (epochs)",
            f"{args.samples} × {args.steps} ({args.steps * settings.batch_size / args.samples:.1f})",
        ),
        (
            "settings",
            f"softmax {settings.softmax}, lr {settings.learning_rate:g}, batch {settings.batch_size}, "
            f"negatives {settings.negatives}, tau {model_config.similarity_temperature:g}, "
            f"top_layers {model_config.adapters.top_layers}",
        ),
        (
            "training-set N@10 before → best",
            f"{result.initial_metrics['ndcg_at_10']:.3f} → "
            f"{result.best_metrics['ndcg_at_10']:.3f} (step {result.best_step})",
        ),
        (
            "training-set H@10 before → best",
            f"{result.initial_metrics['hit_at_10']:.3f} → {result.best_metrics['hit_at_10']:.3f}",
        ),
        ("N@10 by step", ", ".join(f"{step}: {value:.3f}" for step, value in curve)),
        (
            "InfoNCE loss: first 4 / last 8 steps (mean)",
            f"{np.mean(losses[:4]):.2f} / {np.mean(losses[-8:]):.2f} (chance ln {width} = {math.log(width):.2f})",
        ),
        ("seconds per step (training only)", f"{result.seconds_per_step:.1f} s"),
        ("wall time, validations included", f"{seconds / 60:.1f} min"),
        ("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"),
    ]
    print(f"backbone {model_config.backbone}, {args.threads} threads, torch {torch.__version__}")
    print_measures(rows)


if __name__ == "__main__":
    main()
