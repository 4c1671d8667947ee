"""The project's SFT step and decoding against plain PyTorch / HF ``generate`` on the same shapes, one process.

SFT: the batched engine's step (``sft_batched.batched_loss_backward`` + ``MasterWeights``: bf16 adapters,
float32 masters, shared prefixes run once) against a plain PyTorch step of the same shape (the same peft
model, one padded forward of the users' whole texts and one of the item columns', cosine / τ
cross-entropy, AdamW straight on the bf16 adapters), at 256 users + 512 item columns; and our
whole-catalog step at the learning run's batch. Decoding: ``generate_reasoning`` on a merged
copy (``merged.MergedCopy``) against HF ``generate`` on the same merged weights, greedy and sampled
(top-k 200, temperature 1.5, log-probs kept as RecPO needs), same prompts, same number of rows.
Every figure is the mean of timed repeats after warm-up; the ratios are ours / reference, from this run.

  python benchmarks/gpu_speed.py --wheel recbole-1.2.1-py3-none-any.whl --backbone SmolLM2.gguf --out /tmp/speed
Each result is printed as one JSON line as soon as it is measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gpu_common import build_data, timed  # benchmarks/ is on the path when this script runs

from r2ec_pipeline.config import SFTParams
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import R2ecModel, position_ids
from r2ec_pipeline.model.factory import DTYPES, build_dual_head
from r2ec_pipeline.model.generation import end_of_turn_ids, generate_reasoning
from r2ec_pipeline.model.merged import MergedCopy
from r2ec_pipeline.model.sft_batched import (
    MasterWeights,
    SFTData,
    TokenTable,
    batched_loss_backward,
    synchronize,
)


def plain_sft_step(
    model: R2ecModel,
    users: TokenTable,
    items: TokenTable,
    rows: np.ndarray,
    columns: np.ndarray,
    optimizer: torch.optim.Optimizer,
) -> None:
    """The reference: one padded pass of the users' whole texts and one of the items', in-batch InfoNCE, AdamW."""

    def last_states(table: TokenTable, index: np.ndarray) -> torch.Tensor:
        device_index = torch.as_tensor(index, device=model.device)
        ids, mask = table.batch(device_index, int(table.lengths[index].max()))
        states = model.decoder(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).last_hidden_state
        return states[torch.arange(len(index), device=model.device), table.device_lengths[device_index] - 1]

    user_states, item_states = last_states(users, rows), last_states(items, columns)
    logits = F.normalize(user_states.float(), dim=-1) @ F.normalize(item_states.float(), dim=-1).T / 0.02
    F.cross_entropy(logits, torch.arange(len(rows), device=model.device)).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def training_data(model: R2ecModel, data: dict[str, Any]) -> SFTData:
    """Every training sample and the catalog, tokenized once, as the batched engine trains on them."""
    train = data["train"]
    return SFTData.build(
        model,
        train["prompt"].tolist(),
        train["target_item_id"].astype(int).tolist(),
        data["item_prompt"],
        data["histories"]["train"],
    )


def sft_speed(
    model: R2ecModel, data: dict[str, Any], sft: SFTData, users: int, columns: int, run_users: int, repeats: int
) -> dict[str, float]:
    """samples/s of our step and the plain one at ``users`` + ``columns`` item columns (targets, then sampled
    negatives), and of our whole-catalog step at ``run_users`` (no plain counterpart: its item activations
    alone would not fit)."""
    train = data["train"]
    order = np.argsort(sft.users.lengths, kind="stable")  # batches of typical length: the middle of the sorted samples

    def middle(size: int) -> np.ndarray:
        return order[len(order) // 2 - size // 2 :][:size]

    rows, full_rows = middle(users), middle(run_users)
    negatives = np.setdiff1d(sft.item_ids, sft.target_ids[rows])[: columns - users]
    parameters = [p for p in model.lm.parameters() if p.requires_grad]
    weights = MasterWeights(parameters, DTYPES["bfloat16"])
    optimizer = torch.optim.AdamW(weights.masters, lr=1e-6)
    model.lm.train()
    sampled, full = (SFTParams(engine="batched", softmax=kind, item_chunk_size=None) for kind in ("sampled", "full"))

    def ours(batch: np.ndarray, settings: SFTParams) -> None:
        batched_loss_backward(model, sft, batch, settings, negatives if settings.softmax == "sampled" else None)
        weights.step(optimizer, 1.0)

    ours_s = timed(lambda: ours(rows, sampled), repeats, 2, model.device)
    torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
    full_s = timed(lambda: ours(full_rows, full), repeats, 1, model.device)
    full_peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    users_plain = TokenTable.of(model, model.user_texts(train["prompt"].to_numpy()[rows].tolist()), share_prefix=False)
    items_plain = TokenTable.of(model, [data["item_prompt"][int(i)] for i in sft.item_ids], share_prefix=False)
    item_rows = sft.column_of[np.concatenate([sft.target_ids[rows], negatives])]
    plain_optimizer = torch.optim.AdamW(parameters, lr=1e-6)  # bf16 adapters updated as they are
    plain_s = timed(
        lambda: plain_sft_step(model, users_plain, items_plain, np.arange(len(rows)), item_rows, plain_optimizer),
        repeats,
        2,
        model.device,
    )
    weights.release()
    return {
        "users": users,
        "item_columns": columns,
        "user_tokens_mean": float(sft.users.lengths[rows].mean() + len(sft.users.prefix)),
        "item_tokens_mean": float(sft.items.lengths.mean() + len(sft.items.prefix)),
        "shared_prefix_tokens": {"users": len(sft.users.prefix), "items": len(sft.items.prefix)},
        "ours_samples_per_s": users / ours_s,
        "plain_samples_per_s": users / plain_s,
        "ours_over_plain": plain_s / ours_s,
        "full_catalog_users": run_users,
        "full_catalog_samples_per_s": run_users / full_s,
        "full_catalog_peak_gb": full_peak,
    }


def decode_speed(merged: R2ecModel, prompts: list[str], tokens: int, sample: bool) -> dict[str, float]:
    """ms per decoding step of ours and of HF ``generate`` at len(prompts) rows (each warmed up once)."""
    settings = {"do_sample": sample, **({"temperature": 1.5, "top_k": 200} if sample else {})}
    generator = torch.Generator(merged.device).manual_seed(0)
    steps = {}

    def ours():
        steps["ours"] = generate_reasoning(
            merged, prompts, tokens, generator=generator, logprobs=sample, **settings
        ).decode_steps

    def hf():
        batch = merged.tokenize(prompts)
        with torch.no_grad():
            out = merged.lm.generate(
                **batch,
                max_new_tokens=tokens,
                eos_token_id=sorted(end_of_turn_ids(merged)),
                pad_token_id=merged.tokenizer.pad_token_id,
                **settings,
            )
        steps["hf"] = out.shape[1] - batch["input_ids"].shape[1]

    ours_s, hf_s = timed(ours, 2, 1, merged.device), timed(hf, 2, 1, merged.device)
    ours_ms, hf_ms = ours_s / max(steps["ours"], 1) * 1e3, hf_s / max(steps["hf"], 1) * 1e3
    return {
        "rows": len(prompts),
        "sampled": sample,
        "ours_steps": steps["ours"],
        "hf_steps": steps["hf"],
        "ours_ms_per_step": ours_ms,
        "hf_ms_per_step": hf_ms,
        "hf_over_ours": hf_ms / ours_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/r2ec-backbones"))
    parser.add_argument("--out", type=Path, default=Path("gpu_speed"))
    parser.add_argument("--sft-users", type=int, default=256)
    parser.add_argument("--sft-columns", type=int, default=512)
    parser.add_argument("--run-users", type=int, default=384, help="users of the whole-catalog step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, nargs="+", default=[256, 943])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="--backbone is a HF folder whose config and "
        "tokenizer are used with random weights (speed does not depend on them; no GGUF to carry)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also write torch.profiler tables of 3 SFT steps "
        "and 16 decoding steps (profile_sft.txt, profile_decode.txt): where a step's time goes",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.backbone, args.cache)
    data = build_data(args.wheel, tokenizer, 10, None, args.train_samples)
    if args.random_weights:
        from transformers import AutoConfig, AutoModelForCausalLM

        lm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.backbone))
    else:
        lm = load_causal_lm(args.backbone, args.cache)
    model = build_dual_head(lm, tokenizer, {"backbone": args.backbone, "adapters": {"top_layers": None}}, {})
    results = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    sft = training_data(model, data)
    results["sft"] = sft_speed(model, data, sft, args.sft_users, args.sft_columns, args.run_users, args.repeats)
    print(json.dumps(results["sft"]), flush=True)
    merged = MergedCopy(model).model
    prompts = data["test"]["prompt"].tolist()
    results["decoding"] = []
    for rows in args.rows:
        for sample in (False, True):
            results["decoding"].append(decode_speed(merged, prompts[:rows], args.tokens, sample))
            print(json.dumps(results["decoding"][-1]), flush=True)
    (args.out / "speed.json").write_text(json.dumps(results, indent=2))
    if args.profile:
        profile_steps(model, merged, sft, args.run_users, prompts[: max(args.rows)], args.out)


def profile_steps(model: R2ecModel, merged: R2ecModel, sft: SFTData, users: int, prompts: list[str], out: Path) -> None:
    """torch.profiler tables (ops by self device time; CPU time where there is no GPU) of 3 whole-catalog SFT
    steps at ``users`` and of 16 greedy decoding steps over ``prompts``."""
    from torch.profiler import ProfilerActivity, profile

    order = np.argsort(sft.users.lengths, kind="stable")
    rows = order[len(order) // 2 :][:users]
    settings = SFTParams(engine="batched", softmax="full", item_chunk_size=None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    model.lm.train()
    batched_loss_backward(model, sft, rows, settings)  # warm-up
    with profile(activities=activities) as sft_profile:
        for _ in range(3):
            batched_loss_backward(model, sft, rows, settings)
        synchronize(model.device)
    model.lm.zero_grad(set_to_none=True)
    generate_reasoning(merged, prompts, 4, logprobs=False)  # warm-up
    with profile(activities=activities) as decode_profile:
        generate_reasoning(merged, prompts, 16, logprobs=False)
        synchronize(merged.device)
    for name, result in (("sft", sft_profile), ("decode", decode_profile)):
        (out / f"profile_{name}.txt").write_text(result.key_averages().table(sort_by=sort, row_limit=30))


if __name__ == "__main__":
    main()
