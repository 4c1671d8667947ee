"""The project's SFT step and decoding against plain PyTorch / HF ``generate`` on the same shapes, one process.

SFT: the batched engine's step (``sft_batched.batched_loss_backward`` + ``MasterWeights``: bf16 adapters,
float32 masters, shared prefixes run once) against a plain PyTorch step of the same shape (the same peft
model, one padded forward of the users' whole texts and one of the item columns', cosine / τ
cross-entropy, AdamW straight on the bf16 adapters), at 256 users + 512 item columns; and our
whole-catalog step at the learning run's batch, by shared prefixes and by the catalog's length groups. Decoding: ``generate_reasoning`` on a merged
copy (``merged.MergedCopy``) against HF ``generate`` on the same merged weights, greedy and sampled
(top-k 200, temperature 1.5, log-probs kept as RecPO needs), same prompts, same number of rows.
Every figure is the mean of timed repeats after warm-up; the ratios are ours / reference, from this run.

  python benchmarks/gpu_speed.py --data-root .gpu/data --backbone SmolLM2.gguf --out /tmp/speed
Each result is printed as one JSON line as soon as it is measured.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gpu_common import load_tables, timed  # benchmarks/ is on the path when this script runs

from r2ec_pipeline.config import PromptParams, SFTParams, parse_block
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


def training_data(model: R2ecModel, data: dict[str, Any], share_prefix: list[str]) -> SFTData:
    """Every training sample and the catalog, tokenized once, as the batched engine trains on them."""
    train = data["train"]
    return SFTData.build(
        model,
        train["prompt"].tolist(),
        train["target_item_id"].astype(int).tolist(),
        data["item_prompt"],
        data["histories"]["train"],
        share_prefix,
    )


def sft_speed(
    model: R2ecModel, data: dict[str, Any], sft: SFTData, users: int, columns: int, repeats: int
) -> dict[str, float]:
    """samples/s of our step and the plain one at ``users`` + ``columns`` item columns (targets, then sampled
    negatives): the same sampled softmax, ours with shared prefixes and float32 masters."""
    train = data["train"]
    rows = middle_rows(sft, users)
    negatives = np.setdiff1d(sft.item_ids, sft.target_ids[rows])[: columns - users]
    parameters = [p for p in model.lm.parameters() if p.requires_grad]
    weights = MasterWeights(parameters, DTYPES["bfloat16"])
    optimizer = torch.optim.AdamW(weights.masters, lr=1e-6)
    model.lm.train()
    sampled = SFTParams(engine="batched", softmax="sampled", item_chunk_size=None)

    def ours() -> None:
        batched_loss_backward(model, sft, rows, sampled, negatives)
        weights.step(optimizer, 1.0)

    ours_s = timed(ours, repeats, 2, model.device)
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
    parser.add_argument(
        "--data-root", type=Path, default=Path("."), help="where the carried data/ tables lie (gpu_carry.sh)"
    )
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/r2ec-backbones"))
    parser.add_argument("--out", type=Path, default=Path("gpu_speed"))
    parser.add_argument("--sft-users", type=int, default=256)
    parser.add_argument("--sft-columns", type=int, default=512)
    parser.add_argument("--run-users", type=int, default=384, help="users of the whole-catalog step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, nargs="+", default=[943, 256])
    parser.add_argument(
        "--share-prefix",
        nargs="+",
        default=["users,items", "items"],
        help="whole-catalog step variants: the tables whose common prefix runs once (comma-separated, or none)",
    )
    parser.add_argument(
        "--catalog-groups",
        type=int,
        nargs="+",
        default=[4, 1],
        help="whole-catalog step variants: length groups the catalog is encoded in (1: one padded batch)",
    )
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument(
        "--train-samples", type=int, default=None, help="samples tokenized (speed does not depend on how many)"
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="--backbone is a HF folder whose config and "
        "tokenizer are used with random weights (speed does not depend on them; no GGUF to carry)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also write torch.profiler tables of SFT steps and decoding steps "
        "(profile_sft*.txt, profile_decode*.txt, by device and by host time): where a step's time goes",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.backbone, args.cache)
    data = load_tables(args.data_root, args.train_samples)
    if args.random_weights:
        from transformers import AutoConfig, AutoModelForCausalLM

        lm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.backbone))
    else:
        lm = load_causal_lm(args.backbone, args.cache)
    config = parse_block("model", {"backbone": args.backbone, "adapters": {"top_layers": None}})
    model = build_dual_head(lm, tokenizer, config, PromptParams().answer_tag)
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }
    args.out.mkdir(parents=True, exist_ok=True)

    def report(key: str, value: dict[str, Any]) -> None:
        """Print one result as a JSON line and rewrite speed.json: a stopped run keeps what it measured."""
        results.setdefault(key, []).append(value)
        print(json.dumps(value), flush=True)
        (args.out / "speed.json").write_text(json.dumps(results, indent=2))

    for variant in args.share_prefix:
        shared = [] if variant == "none" else variant.split(",")
        sft = training_data(model, data, shared)
        for groups in args.catalog_groups:
            speed = full_catalog_speed(model, sft, args.run_users, args.repeats, groups)
            report("sft_full", {"share_prefix": shared, "catalog_groups": groups, **speed})
        if args.profile and variant == args.share_prefix[0]:
            profile_sft(model, sft, args.run_users, args.out)
    merged = MergedCopy(model).model
    prompts = data["test"]["prompt"].tolist()
    for rows in args.rows:
        for sample in (False, True):
            report("decoding", decode_speed(merged, prompts[:rows], args.tokens, sample))
            if args.profile and rows == args.rows[0] and not sample:
                profile_decode(merged, prompts[:rows], args.out)
    sft = training_data(model, data, ["users", "items"])
    report("sft_vs_plain", sft_speed(model, data, sft, args.sft_users, args.sft_columns, args.repeats))


def middle_rows(sft: SFTData, size: int) -> np.ndarray:
    """``size`` samples of typical length: the middle of the samples sorted by length."""
    order = np.argsort(sft.users.lengths, kind="stable")
    return order[len(order) // 2 - size // 2 :][:size]


def full_catalog_speed(model: R2ecModel, sft: SFTData, users: int, repeats: int, groups: int) -> dict[str, float]:
    """samples/s and peak memory of our whole-catalog step at ``users``, the catalog in ``groups`` length groups."""
    rows = middle_rows(sft, users)
    weights = MasterWeights([p for p in model.lm.parameters() if p.requires_grad], DTYPES["bfloat16"])
    optimizer = torch.optim.AdamW(weights.masters, lr=1e-6)
    settings = SFTParams(engine="batched", softmax="full", item_chunk_size=None, catalog_groups=groups)
    model.lm.train()

    def step() -> None:
        batched_loss_backward(model, sft, rows, settings)
        weights.step(optimizer, 1.0)

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    step_s = timed(step, repeats, 1, model.device)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    weights.release()
    return {
        "users": users,
        "samples_per_s": users / step_s,
        "step_s": step_s,
        "peak_gb": peak,
        "user_tokens_mean": float(sft.users.lengths[rows].mean() + len(sft.users.prefix)),
        "item_tokens_mean": float(sft.items.lengths.mean() + len(sft.items.prefix)),
        "shared_prefix_tokens": {"users": len(sft.users.prefix), "items": len(sft.items.prefix)},
    }


def _profiled(function: Callable[[], Any], device: torch.device):
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    function()  # warm-up
    synchronize(device)
    with profile(activities=activities) as result:
        function()
        synchronize(device)
    return result


def _write_tables(result, out: Path, name: str) -> None:
    """Ops by self device time (where there is a GPU) and by self host time."""
    averages = result.key_averages()
    sorts = (["self_cuda_time_total"] if torch.cuda.is_available() else []) + ["self_cpu_time_total"]
    for sort in sorts:
        suffix = "device" if "cuda" in sort else "host"
        (out / f"profile_{name}_{suffix}.txt").write_text(averages.table(sort_by=sort, row_limit=40))


def profile_sft(model: R2ecModel, sft: SFTData, users: int, out: Path) -> None:
    """torch.profiler tables of two whole-catalog SFT steps (forward and backward) at ``users`` (at most 128:
    the profiler's records on top of a 384-user step ran an H200's 140 GB out)."""
    rows = middle_rows(sft, min(users, 128))
    settings = SFTParams(engine="batched", softmax="full", item_chunk_size=None)
    model.lm.train()

    def two_steps() -> None:
        for _ in range(2):
            batched_loss_backward(model, sft, rows, settings)
        model.lm.zero_grad(set_to_none=True)

    _write_tables(_profiled(two_steps, model.device), out, "sft")


def profile_decode(merged: R2ecModel, prompts: list[str], out: Path) -> None:
    """torch.profiler tables of one greedy generation of 16 tokens over ``prompts`` (prompt pass included)."""
    result = _profiled(lambda: generate_reasoning(merged, prompts, 16, logprobs=False), merged.device)
    _write_tables(result, out, "decode")


if __name__ == "__main__":
    main()
