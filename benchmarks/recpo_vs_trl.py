"""RecPO training throughput against TRL's GRPOTrainer on the same work: prints a table (not a test).

Both start from the SFT checkpoint (SmolLM2 + LoRA, data/06_models/sft) and train on the same
ML-100k user prompts with the same G, users per step, completion length, sampling (temperature, top-k),
clipping (ε_low, ε_high), learning rate and no KL. The reward is the same too: the fused R²ec reward
(method §5.3) of the target item under the current policy. TRL's reward function has to re-encode
prompt + completion + <answer> to get the user state; RecPO takes it from the rollout's last hidden
state. RecPO also does its item loss and target-row refresh, which TRL has no equivalent for.

Trajectories per second = users × G / seconds per step, averaged over the timed steps (the first
step of each is a warm-up and is not timed). Run after `make run`, with nothing else running:

    .venv/bin/pip install -e '.[benchmark]'
    .venv/bin/python benchmarks/recpo_vs_trl.py [--steps 3] [--users 4] [--generations 4] [--completion 32]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import tempfile
import time

import numpy as np
import pandas as pd
import torch
from _common import CACHE, ROOT, print_measures  # benchmarks/_common.py (the script's folder is on sys.path)

from r2ec_pipeline.config import RecPOParams
from r2ec_pipeline.data.samples import earlier_items
from r2ec_pipeline.model.adapters import enable_training
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.dual_head_io import load_dual_head
from r2ec_pipeline.model.scoring import target_ranks
from r2ec_pipeline.rl.rewards import fused_reward, rank_reward, similarity_reward
from r2ec_pipeline.rl.step import Batch, recpo_step

SFT = ROOT / "data/06_models/sft"


def _samples(users: int, steps: int, seed: int = 0) -> pd.DataFrame:
    train = pd.read_parquet(ROOT / "data/05_model_input/train_samples.parquet")
    interactions = pd.read_parquet(ROOT / "data/03_primary/interactions.parquet")
    chosen = train.sample(n=users * (steps + 1), random_state=seed).reset_index(drop=True)
    chosen["mask"] = earlier_items(interactions, chosen)
    return chosen


def _model() -> R2ecModel:
    model = load_dual_head(SFT, CACHE)
    enable_training(model.lm)
    return model


def run_recpo(samples: pd.DataFrame, settings: RecPOParams, users: int, lr: float) -> list[float]:
    """Seconds of each RecPO step (rollout + scoring + both losses + optimizer step + row refresh)."""
    model = _model()
    items = pd.read_parquet(ROOT / "data/05_model_input/item_prompts.parquet")
    item_prompt = dict(zip(items["item_id"].astype(int), items["prompt"], strict=True))
    optimizer = torch.optim.AdamW([p for p in model.lm.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(0)
    seconds = []
    for start in range(0, len(samples), users):
        rows = samples.iloc[start : start + users]
        batch = Batch(
            prompts=rows["prompt"].tolist(),
            targets=rows["target_item_id"].astype(int).tolist(),
            histories=rows["mask"].tolist(),
            target_prompts=[item_prompt[int(i)] for i in rows["target_item_id"]],
        )
        started = time.perf_counter()
        recpo_step(model, optimizer, batch, settings, generator)
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


def run_trl(samples: pd.DataFrame, settings: RecPOParams, users: int, lr: float, steps: int) -> list[float]:
    """Seconds of each GRPOTrainer step on the same prompts, with the fused reward computed by the policy."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model = _model()
    mask_by_prompt = dict(zip(samples["prompt"], samples["mask"], strict=False))
    target_by_prompt = dict(zip(samples["prompt"], samples["target_item_id"].astype(int), strict=False))

    @torch.no_grad()
    def fused(prompts: list[str], completions: list[str], **_: object) -> list[float]:
        was_training = model.lm.training
        model.lm.eval()
        states = model.encode(model.user_texts(prompts, completions))
        model.lm.train(was_training)
        scores = model.score(states, [mask_by_prompt[p] for p in prompts])
        targets = torch.tensor([target_by_prompt[p] for p in prompts])
        rank = rank_reward(target_ranks(scores, targets), settings.ndcg_cutoff)
        reward = fused_reward(rank, similarity_reward(scores, targets), settings.reward_beta, settings.reward_type)
        return reward.float().tolist()

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.started)

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as output:
        config = GRPOConfig(
            output_dir=output,
            per_device_train_batch_size=users * settings.num_generations,
            num_generations=settings.num_generations,
            max_completion_length=settings.max_completion_length,
            temperature=settings.temperature,
            top_k=settings.top_k,
            epsilon=settings.epsilon,
            epsilon_high=settings.epsilon_high,
            beta=settings.beta,
            loss_type="dapo",  # token mean, as RecPO's
            learning_rate=lr,
            lr_scheduler_type="constant",
            max_steps=steps + 1,
            gradient_accumulation_steps=1,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            bf16=False,
            seed=0,
            shuffle_dataset=False,
            disable_dropout=True,
            gradient_checkpointing=False,  # RecPO keeps activations too
        )
        trainer = GRPOTrainer(
            model=model.lm,
            reward_funcs=fused,
            args=config,
            processing_class=model.tokenizer,
            train_dataset=Dataset.from_dict({"prompt": samples["prompt"].tolist()}),
            callbacks=[timer],
        )
        trainer.train()
    return timer.seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each trainer (after one warm-up)")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--completion", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = RecPOParams(num_generations=args.generations, max_completion_length=args.completion)
    samples = _samples(args.users, args.steps)

    recpo = run_recpo(samples, settings, args.users, args.lr)
    gc.collect()
    trl = run_trl(samples, settings, args.users, args.lr, args.steps)
    per_step = args.users * args.generations
    recpo_rate, trl_rate = per_step / np.mean(recpo), per_step / np.mean(trl)
    rows = [
        (
            "setting",
            f"users {args.users} × G {args.generations}, ≤{args.completion} tokens, {args.steps} timed steps, "
            f"{torch.get_num_threads()} threads",
        ),
        ("RecPO s/step", " ".join(f"{s:.1f}" for s in recpo)),
        ("TRL GRPOTrainer s/step", " ".join(f"{s:.1f}" for s in trl)),
        ("RecPO trajectories/s", f"{recpo_rate:.2f}"),
        ("TRL GRPOTrainer trajectories/s", f"{trl_rate:.2f}"),
        ("ratio RecPO / TRL", f"{recpo_rate / trl_rate:.2f}×"),
        ("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"),
    ]
    print_measures(rows)


if __name__ == "__main__":
    main()
