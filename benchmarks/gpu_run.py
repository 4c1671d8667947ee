"""SFT → RecPO → evaluation of every ML-100k test user on one GPU, with the project's own modules; one table.

A GPU machine may have torch, transformers, peft and accelerate but no Kedro or MLflow: this script
needs only those plus pandas, pydantic, tqdm, safetensors (and ``gguf`` for a .gguf backbone). It
builds ML-100k samples from the recbole wheel as the data pipelines do, loads the backbone from a
GGUF file or a Hugging Face folder, and prints: SFT samples/s, RecPO trajectories/s and tokens/s,
peak GPU memory per stage, N@10/H@10 on every test user in both modes with paired bootstrap CIs,
our generation against HF ``generate``, the latency ratio (c)/(a) of ``benchmarks/latency.py``,
and wall time per stage. Each stage's results (and every evaluated user's rank, ``ranks.npz``, with
the users' ids and targets) are written to ``--out`` as soon as it ends, so a run stopped by its time
limit keeps what it measured; ``benchmarks/gpu_vs_baselines.py`` sets those ranks against `make run`'s
Popularity and SASRec on the same users.

  PYTHONPATH=src:. python benchmarks/gpu_run.py --wheel data/01_raw/recbole-1.2.1-py3-none-any.whl \
      --backbone SmolLM2-135M-Instruct.Q4_1.gguf --sft-seconds 90 --recpo-seconds 90 --out /tmp/gpu_run
  # the README's H200 run (7 min 53 s): RecPO's collectives through nccl, every test user in one batch
  torchrun --nproc_per_node 1 benchmarks/gpu_run.py --wheel ... --backbone ... --sft-seconds 60 \
      --recpo-seconds 90 --batch 1024 --out /tmp/gpu_run

On a CPU it runs end to end too (tiny budgets, ``--users``): that is how it is tested before a GPU run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from r2ec_pipeline.baselines.generative import build_title_trie, constrained_beam_search
from r2ec_pipeline.config import RecPOParams, SFTParams
from r2ec_pipeline.data.atomic_files import read_wheel_tables
from r2ec_pipeline.data.samples import mask_lists, seeded_subset
from r2ec_pipeline.metrics import paired_bootstrap, per_sample, ranking_metrics
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.evaluation import rank_both_modes, rank_without_reasoning
from r2ec_pipeline.model.factory import build_dual_head
from r2ec_pipeline.model.generation import end_of_turn_ids, generate_reasoning
from r2ec_pipeline.model.scoring import top_k
from r2ec_pipeline.model.sft import train_sft
from r2ec_pipeline.pipelines.data_ingestion.nodes import canonicalize, movielens_tables
from r2ec_pipeline.pipelines.prompts.nodes import make_samples, render_item_prompts, render_user_prompts
from r2ec_pipeline.rl.distributed import Collective
from r2ec_pipeline.rl.step import Batch, recpo_step
from r2ec_pipeline.rl.trainer import row_generators


class Stages:
    """Wall time and peak GPU memory per stage; every result written to ``out/results.json`` at once."""

    def __init__(self, out: Path) -> None:
        self.out, self.results = out, {"stages": {}}
        out.mkdir(parents=True, exist_ok=True)

    def run(self, name: str, function: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            values = function()
        except Exception as error:  # keep what the other stages measured; say what broke
            values = {"error": f"{type(error).__name__}: {error}"}
            print(f"stage {name} failed: {values['error']}", flush=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            values["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
        values["seconds"] = time.perf_counter() - started
        self.results["stages"][name] = values
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2, default=float))
        print(f"[{name}] " + json.dumps(values, default=float)[:600], flush=True)
        return values


def build_data(wheel: Path, tokenizer, window: int, users: int | None) -> dict[str, Any]:
    """ML-100k as the data_ingestion and prompts pipelines build it (leave-one-out, window ``window``)."""
    interactions, items = canonicalize(*movielens_tables(read_wheel_tables(wheel)), 2)
    params = {"window_size": window, "split": "leave_one_out"}
    train, valid, test = render_user_prompts(make_samples(interactions, params), items, tokenizer, params)
    item_prompts = render_item_prompts(items, tokenizer, params)
    test = seeded_subset(test, users, 0)
    return {"interactions": interactions, "items": items, "train": train, "test": test,
            "item_prompt": dict(zip(item_prompts["item_id"].astype(int), item_prompts["prompt"])),
            "test_masks": mask_lists(test, interactions, "full")}


def rank(model: R2ecModel, data: dict[str, Any], tokens: int, batch: int, both: bool) -> dict[str, np.ndarray]:
    """Target ranks of every test user, direct mode and (``both``) greedy reasoning."""
    test = data["test"]
    prompts, targets = test["prompt"].tolist(), test["target_item_id"].astype(int).tolist()
    if not both:
        return {"direct": rank_without_reasoning(model, prompts, targets, data["test_masks"], batch).ranks}
    rankings, _ = rank_both_modes(model, prompts, targets, data["test_masks"], tokens, batch)
    return {mode: ranking.ranks for mode, ranking in rankings.items()}


def summary(ranks: dict[str, np.ndarray]) -> dict[str, Any]:
    return {mode: {**ranking_metrics(values, (10,)), "users": len(values)} for mode, values in ranks.items()}


def recpo(model: R2ecModel, data: dict[str, Any], seconds: float, settings: RecPOParams, users: int,
          lr: float) -> dict[str, Any]:
    """RecPO steps on seeded batches of training users until ``seconds`` pass (the evaluation re-encodes the items)."""
    collective = Collective()
    train, item_prompt = data["train"], data["item_prompt"]
    histories = mask_lists(train, data["interactions"], "full")
    optimizer = torch.optim.AdamW([p for p in model.lm.parameters() if p.requires_grad], lr=lr)
    rng, step, paths_done, tokens_done, rewards, started = np.random.default_rng(0), 0, 0, 0, [], time.perf_counter()
    while time.perf_counter() - started < seconds:
        rows = rng.choice(len(train), size=users, replace=False)
        targets = train["target_item_id"].to_numpy()[rows].astype(int).tolist()
        batch = Batch(prompts=train["prompt"].to_numpy()[rows].tolist(), targets=targets,
                      histories=[histories[i] for i in rows], target_prompts=[item_prompt[t] for t in targets])
        generators = row_generators(0, step, range(users * settings.num_generations), model.device)
        metrics, paths = recpo_step(model, optimizer, batch, settings, generators, collective)
        step, paths_done, tokens_done = step + 1, paths_done + len(paths.token_ids), tokens_done + int(paths.mask.sum())
        rewards.append(metrics["reward_mean"])
    elapsed = time.perf_counter() - started
    return {"steps": step, "trajectories_per_s": paths_done / elapsed, "tokens_per_s": tokens_done / elapsed,
            "reward_first_last": [rewards[0], float(np.mean(rewards[-5:]))] if rewards else None,
            "collective": f"{dist.get_backend()} x{collective.world_size}" if collective.active else "none"}


def generation_speed(model: R2ecModel, prompts: list[str], tokens: int) -> dict[str, float]:
    """Greedy decoding throughput of ``generate_reasoning`` and of HF ``generate`` on the same prompts.

    Counted as rows × decode steps per second (finished rows included, as HF pads them), since ours
    stops a row at the answer tag and cuts trailing whitespace while HF runs to end of turn.
    """
    model.lm.eval()
    timings = {}
    for name in ("ours", "hf_generate", "ours", "hf_generate"):  # the second round's timings are kept: the
        if model.device.type == "cuda":  # first one warms up (kernels loaded, stop mask built)
            torch.cuda.synchronize()
        started = time.perf_counter()
        if name == "ours":
            steps = generate_reasoning(model, prompts, tokens).decode_steps
        else:
            batch = model.tokenize(prompts)
            with torch.no_grad():
                out = model.lm.generate(**batch, max_new_tokens=tokens, do_sample=False,
                                        eos_token_id=sorted(end_of_turn_ids(model)),
                                        pad_token_id=model.tokenizer.pad_token_id)
            steps = out.shape[1] - batch["input_ids"].shape[1]
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        timings[f"{name}_row_tokens_per_s"] = len(prompts) * steps / seconds
        timings[f"{name}_ms_per_step"] = seconds / max(steps, 1) * 1e3
    timings["ours_over_hf"] = timings["ours_row_tokens_per_s"] / timings["hf_generate_row_tokens_per_s"]
    return timings


def latency(model: R2ecModel, data: dict[str, Any], users: int) -> dict[str, float]:
    """benchmarks/latency.py's (a) one scoring step vs (c) constrained beam search, batch 1, median ms."""
    model.lm.eval()
    items, tag = data["items"], model.config.answer_tag
    trie = build_title_trie(model, items["item_id"].tolist(), items["title"].tolist())
    a, c = [], []
    with torch.no_grad():
        for index, sample in enumerate(data["test"].head(users + 1).itertuples(index=False)):
            for store, call in ((a, lambda: top_k(model.score(model.encode([sample.prompt + tag]),
                                                              [list(sample.history_item_ids)]), 10)),
                                (c, lambda: constrained_beam_search(model, sample.prompt + tag, trie, 10))):
                if model.device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                call()
                if model.device.type == "cuda":
                    torch.cuda.synchronize()
                if index:  # the first user warms up
                    store.append(time.perf_counter() - started)
    return {"a_ms": float(np.median(a)) * 1e3, "c_ms": float(np.median(c)) * 1e3,
            "c_over_a": float(np.median(c) / np.median(a)), "users": len(a)}


def comparisons(ranks: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Paired bootstrap 95% CIs of N@10 differences on the same users."""
    ndcg = {f"{model}.{mode}": per_sample(values, "ndcg_at_10") for model, modes in ranks.items()
            for mode, values in modes.items()}
    pairs = [("sft.direct", "zero_shot.direct"), ("recpo.direct", "sft.direct"),
             ("recpo.reasoning", "sft.reasoning"), ("recpo.reasoning", "recpo.direct")]
    return {f"{a} - {b}": paired_bootstrap(ndcg[a], ndcg[b]) for a, b in pairs if a in ndcg and b in ndcg}


# the paper-sized step's memory, three ways: (stage label, policy_micro_batch, gradient checkpointing)
MEMORY_SETTINGS = (("plain", None, False), ("micro_batch_2", 2, False), ("micro_2_checkpointing", 2, True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, required=True, help="recbole-1.2.1 wheel (ML-100k inside)")
    parser.add_argument("--backbone", required=True, help="a .gguf file, a HF folder or a packaged: spec")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/r2ec-backbones"))
    parser.add_argument("--out", type=Path, default=Path("gpu_run"))
    parser.add_argument("--sft-seconds", type=float, default=90.0)
    parser.add_argument("--recpo-seconds", type=float, default=90.0)
    parser.add_argument("--recpo-users", type=int, default=32, help="users a RecPO step (× 4 paths); a decoding "
                        "step costs about the same for 32 and 128 rows on a GPU")
    parser.add_argument("--recpo-micro-batch", type=int, default=8, help="users a policy-update micro-batch")
    parser.add_argument("--recpo-lr", type=float, default=1e-5)
    parser.add_argument("--reasoning-tokens", type=int, default=256)
    parser.add_argument("--window", type=int, default=10, help="history items per prompt (paper: 20)")
    parser.add_argument("--users", type=int, default=None, help="test users (default: every one of them)")
    parser.add_argument("--batch", type=int, default=512, help="users per evaluation batch (a decoding step "
                        "costs about the same at 128 and 512 rows on a GPU: Python-bound)")
    parser.add_argument("--latency-users", type=int, default=10)
    parser.add_argument("--speed-prompts", type=int, default=64, help="prompts of the generation-speed comparison")
    parser.add_argument("--speed-tokens", type=int, default=64, help="tokens of the generation-speed comparison")
    parser.add_argument("--memory-tokens", type=int, default=512, help="completion tokens of the memory step")
    args = parser.parse_args()
    if "LOCAL_RANK" in os.environ:  # torchrun: one process group, on the GPU when there is one
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    torch.manual_seed(0)
    stages = Stages(args.out)
    stages.results["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    stages.results["versions"] = {"torch": torch.__version__, "transformers": __import__("transformers").__version__}
    tokenizer = load_tokenizer(args.backbone, args.cache)
    data: dict[str, Any] = {}
    stages.run("data", lambda: data.update(build_data(args.wheel, tokenizer, args.window, args.users)) or {
        "train_samples": len(data["train"]), "test_users": len(data["test"]), "items": len(data["items"])})
    model_params = {"backbone": args.backbone, "adapters": {"top_layers": None}, "encode_batch_size": args.batch}
    model = build_dual_head(load_causal_lm(args.backbone, args.cache), tokenizer, model_params, {})
    stages.results["model"] = {"device": str(model.device), "dtype": str(next(model.lm.parameters()).dtype)}
    ids = sorted(data["item_prompt"])
    ranks: dict[str, dict[str, np.ndarray]] = {}

    def evaluate(name: str, both: bool) -> dict[str, Any]:
        """Rank every test user; the per-user ranks and the paired comparisons so far are saved at once."""
        model.build_item_table(ids, [data["item_prompt"][i] for i in ids], batch_size=args.batch, progress=False)
        ranks[name] = rank(model, data, args.reasoning_tokens, args.batch, both)
        np.savez(args.out / "ranks.npz", user_id=data["test"]["user_id"].to_numpy(),
                 target_item_id=data["test"]["target_item_id"].to_numpy(),
                 **{f"{model_name}.{mode}": values for model_name, modes in ranks.items() for mode, values in modes.items()})
        stages.results["comparisons"] = comparisons(ranks)
        return summary(ranks[name])

    stages.run("zero_shot_eval", lambda: evaluate("zero_shot", both=False))
    sft_settings = SFTParams(steps=1_000_000, batch_size=32, negatives=32, learning_rate=3e-4,
                             max_seconds=args.sft_seconds, item_chunk_size=None)
    train = data["train"]

    def sft() -> dict[str, Any]:
        result = train_sft(model, train["prompt"].tolist(), train["target_item_id"].astype(int).tolist(),
                           data["item_prompt"], None, sft_settings)
        return {"steps": result.steps_run, "samples_per_s": sft_settings.batch_size / result.seconds_per_step,
                "epochs": result.steps_run * sft_settings.batch_size / len(train),
                "loss_first_last": [result.history["train.loss"][0]["value"],
                                    float(np.mean([p["value"] for p in result.history["train.loss"][-20:]]))]}

    stages.run("sft", sft)
    stages.run("generation_vs_hf", lambda: generation_speed(
        model, data["test"]["prompt"].head(args.speed_prompts).tolist(), args.speed_tokens))
    stages.run("latency", lambda: latency(model, data, args.latency_users))
    stages.run("sft_eval", lambda: evaluate("sft", both=True))
    settings = RecPOParams(max_completion_length=args.reasoning_tokens, policy_micro_batch=args.recpo_micro_batch)
    stages.run("recpo", lambda: recpo(model, data, args.recpo_seconds, settings, args.recpo_users, args.recpo_lr))
    stages.run("recpo_eval", lambda: evaluate("recpo", both=True))
    for label, micro, checkpointing in MEMORY_SETTINGS:  # one stage each: a run cut short keeps the ones done
        stages.run(f"memory_{label}", lambda micro=micro, checkpointing=checkpointing: paper_step_memory(
            model, data, args.memory_tokens, micro, checkpointing))
    print_table(stages.results)
    if dist.is_initialized():
        dist.destroy_process_group()


def paper_step_memory(model: R2ecModel, data: dict[str, Any], tokens: int, micro: int | None,
                      checkpointing: bool) -> dict[str, Any]:
    """One RecPO step at the paper's batch (8 users × 4 paths × up to ``tokens``); its peak is the stage's."""
    model.set_gradient_checkpointing(checkpointing)
    settings = RecPOParams(max_completion_length=tokens, policy_micro_batch=micro, temperature=1.0, top_k=None)
    train = data["train"].head(8)
    targets = train["target_item_id"].astype(int).tolist()
    batch = Batch(train["prompt"].tolist(), targets, [[] for _ in targets], [data["item_prompt"][t] for t in targets])
    optimizer = torch.optim.SGD([p for p in model.lm.parameters() if p.requires_grad], lr=0.0)
    try:
        _, paths = recpo_step(model, optimizer, batch, settings, torch.Generator(model.device).manual_seed(0))
    finally:
        model.set_gradient_checkpointing(False)
    return {"completion_tokens": int(paths.mask.sum()), "prompt_tokens": int(train["prompt_tokens"].sum())}


def print_table(results: dict[str, Any]) -> None:
    stages = results["stages"]
    print(f"\n# gpu_run on {results['device']} ({results['versions']}), model {results.get('model')}\n")
    print("| stage | seconds | peak GPU GB | figures |\n|---|---:|---:|---|")
    for name, values in stages.items():
        figures = {k: v for k, v in values.items() if k not in ("seconds", "peak_gpu_gb")}
        peak = values.get("peak_gpu_gb")
        print(f"| {name} | {values['seconds']:.1f} | {'' if peak is None else f'{peak:.2f}'} | "
              f"{json.dumps(figures, default=lambda v: round(float(v), 4))} |")
    print("\n| N@10 difference (same users) | difference | 95% CI | users |\n|---|---:|---|---:|")
    for name, value in results.get("comparisons", {}).items():
        print(f"| {name} | {value['difference']:+.4f} | [{value['low']:+.4f}, {value['high']:+.4f}] | "
              f"{value['users']} |")


if __name__ == "__main__":
    main()
