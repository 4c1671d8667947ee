"""The learning run on one GPU: zero-shot, a full SFT epoch, RecPO, every test user in both modes; one table.

Needs only torch, transformers, peft, pandas, pyarrow, pydantic, tqdm, safetensors (and ``gguf`` for a
.gguf backbone): no Kedro or MLflow. It builds the ML-100k samples from the recbole wheel as the data
and prompts pipelines do, then:

1. ranks every test user with the zero-shot model, in both modes;
2. trains SFT with the batched engine (``model/sft_batched.py``: whole-catalog softmax, bf16 adapters with
   float32 masters) for ``--sft-epochs`` over every training sample, validating direct N@10 on every
   validation user ``--validations`` times an epoch and keeping the best weights;
3. trains RecPO from them (rollouts decoded by a merged bf16 copy of the policy) until the wall-clock
   budget leaves just enough for the test evaluations, validating reasoning N@10 on every validation
   user and keeping the best weights;
4. ranks every test user with SFT and RecPO in both modes.

Everything lands in ``--out`` as each stage ends (a stopped run keeps what it measured): ``results.json``
(wall time and peak GPU memory per stage, metrics, curves, paired CIs), ``rankings.parquet`` (every test
user's rank and top 50 in raw ids per model and mode, the columns of `make run`'s rankings export, with the
project's internal ids beside them), ``sft.tar`` and ``recpo.tar`` (the kept checkpoints: adapters, item table, tokenizer). A stage that fails
stops the run with exit status 1. ``make gpu-import RUN=<out>`` logs the result into MLflow and registers it.

  python benchmarks/gpu_run.py --wheel recbole-1.2.1-py3-none-any.whl \\
      --backbone SmolLM2-135M-Instruct.Q4_1.gguf --out /tmp/gpu_run --wall-budget 440 --sft-max-seconds 240
(``benchmarks/gpu_session.sh learn`` is that command on a lent machine.) On a CPU it runs end to end too with ``--users``/``--train-samples`` and small budgets (how it is tested).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from gpu_common import StageFailed, Stages, build_data, print_table  # benchmarks/ is on the path

from r2ec_pipeline.config import PromptParams, RecPOParams, SFTParams, parse_block
from r2ec_pipeline.metrics import paired_bootstrap, per_sample, ranking_metrics
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.dual_head_io import (
    restore_trainable,
    save_dual_head,
    trainable_state,
)
from r2ec_pipeline.model.evaluation import (
    Ranking,
    rank_both_modes,
    rank_without_reasoning,
)
from r2ec_pipeline.model.factory import build_dual_head
from r2ec_pipeline.model.merged import MergedCopy
from r2ec_pipeline.model.sft import train_sft
from r2ec_pipeline.rl.step import Batch, recpo_step

TOP_N = 50  # items kept per user in rankings.parquet, as make run's export


def rank_split(
    policy: R2ecModel, merged: MergedCopy, data: dict[str, Any], split: str, both: bool, tokens: int, batch: int
) -> dict[str, Ranking]:
    """Every user of ``split`` ranked over the catalog re-encoded by the policy: direct mode, and with
    ``both`` greedy reasoning too (both modes then read off the merged copy's one prompt pass)."""
    ids = sorted(data["item_prompt"])
    policy.build_item_table(ids, [data["item_prompt"][i] for i in ids], batch_size=batch, progress=False)
    frame = data[split]
    prompts, targets = frame["prompt"].tolist(), frame["target_item_id"].astype(int).tolist()
    if not both:
        return {
            "direct": rank_without_reasoning(
                policy, prompts, targets, data["histories"][split], batch, progress=False, top_n=TOP_N
            )
        }
    rankings, _ = rank_both_modes(
        merged.refresh(), prompts, targets, data["histories"][split], tokens, batch, progress=False, top_n=TOP_N
    )
    return rankings


def summary(rankings: dict[str, Ranking]) -> dict[str, Any]:
    return {mode: {**ranking_metrics(r.ranks, (10, 20)), "users": len(r.ranks)} for mode, r in rankings.items()}


class Results:
    """Test rankings per model and mode, written as ``rankings.parquet`` (raw ids) and compared with CIs."""

    def __init__(self, data: dict[str, Any], stages: Stages) -> None:
        self.data, self.stages, self.rankings = data, stages, {}
        self.raw = dict(
            zip(data["items"]["item_id"].astype(int), data["items"]["raw_item_id"].astype(str), strict=True)
        )
        users = data["interactions"].drop_duplicates("user_id").set_index("user_id")["raw_user_id"]
        self.user_ids = data["test"]["user_id"].map(users).astype(str).to_numpy()

    def add(self, model: str, rankings: dict[str, Ranking]) -> dict[str, Any]:
        self.rankings[model] = rankings
        self.frame().to_parquet(self.stages.out / "rankings.parquet", index=False)
        self.stages.results["comparisons"] = self.comparisons()
        return summary(rankings)

    def frame(self) -> pd.DataFrame:
        test, parts = self.data["test"], []
        history = [[self.raw[int(i)] for i in h] for h in self.data["histories"]["test"]]
        for model, modes in self.rankings.items():
            for mode, ranking in modes.items():
                parts.append(
                    pd.DataFrame(
                        {
                            "user_id": self.user_ids,
                            "target_item_id": [self.raw[int(i)] for i in test["target_item_id"]],
                            "history_item_ids": history,
                            "topk_item_ids": [[self.raw[int(i)] for i in row] for row in ranking.top_ids],
                            "model": model,
                            "mode": mode,
                            "rank": ranking.ranks,
                            # the project's own ids, as make run's rankings.parquet has them (gpu_vs_baselines.py)
                            "internal_user_id": test["user_id"].to_numpy(),
                            "internal_target_id": test["target_item_id"].to_numpy(),
                        }
                    )
                )
        return pd.concat(parts, ignore_index=True)

    def comparisons(self) -> dict[str, Any]:
        """Paired bootstrap 95% CIs of N@10 differences on the same users."""
        ndcg = {
            f"{m}.{mode}": per_sample(r.ranks, "ndcg_at_10")
            for m, modes in self.rankings.items()
            for mode, r in modes.items()
        }
        pairs = [
            ("sft.direct", "zero_shot.direct"),
            ("recpo.direct", "sft.direct"),
            ("recpo.reasoning", "sft.reasoning"),
            ("recpo.reasoning", "recpo.direct"),
            ("sft.reasoning", "sft.direct"),
        ]
        return {f"{a} - {b}": paired_bootstrap(ndcg[a], ndcg[b]) for a, b in pairs if a in ndcg and b in ndcg}


def sft_stage(
    policy: R2ecModel, merged: MergedCopy, data: dict[str, Any], args: argparse.Namespace, history: dict[str, Any]
) -> dict[str, Any]:
    """SFT for ``--sft-epochs`` over every training sample, direct N@10 on every validation user selecting."""
    train = data["train"]
    per_epoch = -(-len(train) // args.sft_batch)
    settings = SFTParams(
        engine="batched",
        softmax="full",
        adapter_dtype="bfloat16",
        epochs=args.sft_epochs,
        batch_size=args.sft_batch,
        learning_rate=args.sft_lr,
        item_chunk_size=args.sft_item_chunk,
        share_prefix=args.sft_share_prefix,
        catalog_groups=args.sft_catalog_groups,
        eval_every=max(1, per_epoch // args.validations),
        negatives=0,
        steps=1,
        max_seconds=args.sft_max_seconds,
    )

    def validate(model: R2ecModel) -> dict[str, float]:
        return ranking_metrics(rank_split(model, merged, data, "valid", False, 0, args.batch)["direct"].ranks, (10,))

    result = train_sft(
        policy,
        train["prompt"].tolist(),
        train["target_item_id"].astype(int).tolist(),
        data["item_prompt"],
        validate,
        settings,
        data["histories"]["train"],
    )
    history["sft"] = result.history
    train_seconds = result.seconds_per_step * result.steps_run
    return {
        "steps": result.steps_run,
        "epochs": result.samples_run / len(train),
        "samples": result.samples_run,
        "samples_per_s": result.samples_per_second,
        "train_seconds": train_seconds,
        "best_step": result.best_step,
        "valid_best": result.best_metrics,
        "valid_initial": result.initial_metrics,
        "loss_first_last": [result.history["train.loss"][0]["value"], result.history["train.loss"][-1]["value"]],
    }


def recpo_stage(
    policy: R2ecModel,
    merged: MergedCopy,
    data: dict[str, Any],
    args: argparse.Namespace,
    history: dict[str, Any],
    deadline: float,
    stages: Stages,
) -> dict[str, Any]:
    """RecPO steps until ``deadline`` (run seconds), reasoning N@10 on every validation user selecting."""
    settings = RecPOParams(
        max_completion_length=args.recpo_tokens, learning_rate=args.recpo_lr, policy_micro_batch=args.recpo_micro_batch
    )
    train, item_prompt = data["train"], data["item_prompt"]
    optimizer = torch.optim.AdamW([p for p in policy.lm.parameters() if p.requires_grad], lr=args.recpo_lr)
    rng, curves = np.random.default_rng(0), history.setdefault("recpo", {})

    def validate(step: int) -> float:
        rankings = rank_split(policy, merged, data, "valid", True, args.reasoning_tokens, args.batch)
        for mode, ranking in rankings.items():
            curves.setdefault(f"valid.{mode}.ndcg_at_10", []).append(
                {"step": step, "value": ranking_metrics(ranking.ranks, (10,))["ndcg_at_10"]}
            )
        return curves["valid.reasoning.ndcg_at_10"][-1]["value"]

    best_value, best_step, best_state = validate(0), 0, trainable_state(policy)
    step, paths_done, tokens_done, train_seconds = 0, 0, 0, 0.0
    generator = torch.Generator(policy.device).manual_seed(0)
    while stages.elapsed() < deadline and (args.recpo_max_steps is None or step < args.recpo_max_steps):
        started = time.perf_counter()
        rows = rng.choice(len(train), size=args.recpo_users, replace=False)
        targets = train["target_item_id"].to_numpy()[rows].astype(int).tolist()
        batch = Batch(
            prompts=train["prompt"].to_numpy()[rows].tolist(),
            targets=targets,
            histories=[data["histories"]["train"][i] for i in rows],
            target_prompts=[item_prompt[t] for t in targets],
        )
        metrics, paths = recpo_step(policy, optimizer, batch, settings, generator, decoding=merged)
        train_seconds += time.perf_counter() - started
        step, paths_done, tokens_done = step + 1, paths_done + len(paths.token_ids), tokens_done + int(paths.mask.sum())
        for name, value in metrics.items():
            curves.setdefault(f"train.{name}", []).append({"step": step, "value": float(value)})
        if step % args.recpo_eval_every == 0:
            value = validate(step)
            if value > best_value:
                best_value, best_step, best_state = value, step, trainable_state(policy)
    if step % args.recpo_eval_every:  # the last steps are validated too
        value = validate(step)
        if value > best_value:
            best_value, best_step, best_state = value, step, trainable_state(policy)
    restore_trainable(policy, best_state)
    merged.refresh()
    return {
        "steps": step,
        "trajectories_per_s": paths_done / max(train_seconds, 1e-9),
        "tokens_per_s": tokens_done / max(train_seconds, 1e-9),
        "train_seconds": train_seconds,
        "best_step": best_step,
        "valid_best_reasoning_ndcg_at_10": best_value,
        "reward_first_last": [curves["train.reward_mean"][0]["value"], curves["train.reward_mean"][-1]["value"]]
        if step
        else None,
    }


def save_checkpoint(policy: R2ecModel, out: Path, name: str) -> None:
    """The kept weights as one tar of a checkpoint folder (adapters, item table, tokenizer, config)."""
    with tempfile.TemporaryDirectory() as staging:
        folder = save_dual_head(policy, Path(staging) / name)
        with tarfile.open(out / f"{name}.tar", "w") as archive:
            archive.add(folder, arcname=name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, required=True, help="recbole-1.2.1 wheel (ML-100k inside)")
    parser.add_argument("--backbone", required=True, help="a .gguf file, a HF folder or a packaged: spec")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/r2ec-backbones"))
    parser.add_argument("--out", type=Path, default=Path("gpu_run"))
    parser.add_argument(
        "--wall-budget",
        type=float,
        default=440.0,
        help="seconds for the whole run: RecPO stops early enough for the test evaluations to finish inside it",
    )
    parser.add_argument("--window", type=int, default=10, help="history items per prompt (paper: 20)")
    parser.add_argument("--users", type=int, default=None, help="validation and test users (default: all)")
    parser.add_argument("--train-samples", type=int, default=None, help="training samples (default: all)")
    parser.add_argument("--batch", type=int, default=1024, help="users per evaluation batch")
    parser.add_argument("--sft-epochs", type=float, default=1.0)
    parser.add_argument("--sft-batch", type=int, default=512)
    parser.add_argument("--sft-lr", type=float, default=5e-4)
    parser.add_argument(
        "--sft-item-chunk",
        type=int,
        default=None,
        help="catalog items whose activations are held at once (null: the whole catalog in one graph)",
    )
    parser.add_argument(
        "--sft-share-prefix",
        nargs="*",
        choices=["users", "items"],
        default=["items"],
        help="texts whose common prefix runs once with its KV cache repeated (the others run whole, unmasked); "
        "conf/gpu's choice, the faster on an H200",
    )
    parser.add_argument(
        "--sft-catalog-groups",
        type=int,
        default=SFTParams().catalog_groups,
        help="length groups the whole catalog is encoded in each step (1: one padded batch)",
    )
    parser.add_argument(
        "--sft-max-seconds",
        type=float,
        default=None,
        help="stop SFT once its steps took this long (the epochs then run short: results.json says how many were done)",
    )
    parser.add_argument("--validations", type=int, default=4, help="SFT validations per epoch")
    parser.add_argument("--recpo-users", type=int, default=128, help="users a RecPO step (× 4 paths)")
    parser.add_argument("--recpo-micro-batch", type=int, default=None)
    parser.add_argument("--recpo-lr", type=float, default=1e-5)
    parser.add_argument("--recpo-tokens", type=int, default=256, help="reasoning tokens of a rollout")
    parser.add_argument("--recpo-eval-every", type=int, default=8)
    parser.add_argument("--recpo-max-steps", type=int, default=None, help="stop RecPO after this many steps")
    parser.add_argument("--reasoning-tokens", type=int, default=256, help="greedy reasoning tokens at evaluation")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # the library's progress lines (SFT every 50 steps, validations) on stdout, beside the stage lines
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)
    torch.manual_seed(0)
    stages = Stages(args.out)
    stages.results.update(
        device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        arguments=vars(args),
        versions={"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    )
    history: dict[str, Any] = stages.results.setdefault("curves", {})
    try:
        tokenizer = load_tokenizer(args.backbone, args.cache)
        data: dict[str, Any] = {}
        stages.run(
            "data",
            lambda: data.update(build_data(args.wheel, tokenizer, args.window, args.users, args.train_samples))
            or {
                "train_samples": len(data["train"]),
                "valid_users": len(data["valid"]),
                "test_users": len(data["test"]),
                "items": len(data["items"]),
            },
        )
        model_params = {"backbone": args.backbone, "adapters": {"top_layers": None}, "encode_batch_size": args.batch}
        policy = build_dual_head(
            load_causal_lm(args.backbone, args.cache),
            tokenizer,
            parse_block("model", model_params),
            PromptParams().answer_tag,
        )
        merged = MergedCopy(policy)
        results = Results(data, stages)
        both = lambda: rank_split(policy, merged, data, "test", True, args.reasoning_tokens, args.batch)  # noqa: E731
        stages.run("zero_shot_test", lambda: results.add("zero_shot", both()))
        stages.run("sft", lambda: sft_stage(policy, merged, data, args, history))
        stages.run("sft_test", lambda: results.add("sft", both()))
        save_checkpoint(policy, args.out, "sft")
        # what follows RecPO's last step: one validation and the test evaluation (each like sft_test), saving
        evaluation = stages.results["stages"]["sft_test"]["seconds"]
        deadline = args.wall_budget - 2 * evaluation - 15
        if deadline - stages.elapsed() < 1.5 * evaluation:  # not even the first validation and a step would fit
            stages.results["stages"]["recpo"] = {"skipped": f"{deadline - stages.elapsed():.0f} s left of the budget"}
            stages.save()
        else:
            stages.run("recpo", lambda: recpo_stage(policy, merged, data, args, history, deadline, stages))
            stages.run("recpo_test", lambda: results.add("recpo", both()))
            save_checkpoint(policy, args.out, "recpo")
    except StageFailed as failure:
        print(failure, file=sys.stderr, flush=True)
        return 1
    stages.results["wall_seconds"] = stages.elapsed()
    stages.save()
    print_table(stages.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
