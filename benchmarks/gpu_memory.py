"""Estimated peak GPU memory of a RecPO step at the paper's settings, or of an SFT step (``--sft``), by part.

Backbones: SmolLM2-135M (ours), Qwen2.5-3B-sized and Gemma-2-2B-sized, in bfloat16 with float32 LoRA
(r = 4 on every projection of every layer, AdamW), B = 8 users per device, G = 4 paths, 512 completion
tokens, prompts of up to 2048 tokens. Parts:
  weights      frozen backbone, bf16
  adapters     LoRA weights + gradients + AdamW moments, fp32 (16 bytes a parameter)
  activations  what autograd keeps in the policy update: the prompt once (its KV cache is shared by
               the G paths) + B·G completions; with gradient checkpointing each layer keeps only its
               input, of full sequences (HF drops caches under checkpointing), plus one layer's working set.
               Per token and layer: the bf16 tensors of the layer, and the fp32 copy of every adapted
               projection's input that peft makes (it casts the input to the LoRA weights' dtype) and
               autograd keeps for the LoRA gradient; that second part was missing until the H200
               measurement showed the estimate 2.4× low (see README)
  logits       float32 vocabulary log-probs kept for backward: of every completion token at once
               (the old code) or of ``logprob_chunk_tokens`` of them (chunked, recomputed in backward)
  kv cache     the rollout's generation cache, B·G rows × (prompt + completion)
Estimates are first-order (no allocator slack, no attention workspace); the H200 measurements in
docs/gpu.md are what they are set against.

Usage: python benchmarks/gpu_memory.py [--prompt 2048] [--completion 512] [--users 8] [--paths 4]
       python benchmarks/gpu_memory.py --sft --user-tokens N --item-tokens M --margin X
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

GB = 2**30
BF16, FP32 = 2, 4


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a decoder-only backbone."""

    name: str
    parameters: float
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int


BACKBONES = (
    Shape("SmolLM2-135M", 134.5e6, 30, 576, 1536, 9, 3, 64, 49152),
    Shape("Qwen2.5-3B-sized", 3.09e9, 36, 2048, 11008, 16, 2, 128, 151936),
    Shape("Gemma-2-2B-sized", 2.61e9, 26, 2304, 9216, 8, 4, 256, 256000),
)


@dataclass(frozen=True)
class Step:
    users: int = 8  # B per device
    paths: int = 4  # G
    prompt: int = 2048  # tokens
    completion: int = 512  # tokens
    lora_rank: int = 4
    chunk_tokens: int = 4096  # logprob_chunk_tokens
    micro_users: int | None = None  # policy_micro_batch: users per forward/backward (None: all at once)
    checkpointing: bool = False


def lora_parameters(shape: Shape, rank: int) -> int:
    """r·(fan_in + fan_out) for q, k, v, o, gate, up and down of every layer."""
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    per_layer = (shape.hidden + q) * 2 + (shape.hidden + kv) * 2 + (shape.hidden + shape.intermediate) * 3
    return rank * per_layer * shape.layers


def activation_bytes_per_token_layer(shape: Shape) -> int:
    """bf16 tensors one layer keeps per token for backward: its inputs and norms (4h), q/k/v and the
    attention output (SDPA keeps them, no L² matrix), and the MLP's gate, up and product (3I)."""
    attention = (2 * shape.heads + 2 * shape.kv_heads) * shape.head_dim
    return BF16 * (4 * shape.hidden + attention + 3 * shape.intermediate)


def lora_input_bytes_per_token_layer(shape: Shape, rank: int) -> int:
    """fp32 tensors the seven adapters of one layer keep per token: each projection's input, cast to fp32
    by peft (q, k, v, gate and up read the hidden state, o the attention output, down the MLP product;
    five casts of the same state, one each), and the rank-r output of each A for B's gradient."""
    return FP32 * (5 * shape.hidden + shape.heads * shape.head_dim + shape.intermediate + 7 * rank)


def estimate(shape: Shape, step: Step) -> dict[str, float]:
    """Bytes by part for one RecPO step (see the module docstring), and their total."""
    users = min(step.micro_users or step.users, step.users)  # users whose graph exists at once
    completions = users * step.paths * step.completion
    per_token = activation_bytes_per_token_layer(shape) + lora_input_bytes_per_token_layer(shape, step.lora_rank)
    if step.checkpointing:
        tokens = users * step.paths * (step.prompt + step.completion)
        activations = shape.layers * tokens * BF16 * shape.hidden + tokens * per_token
    else:
        activations = shape.layers * (users * step.prompt + completions) * per_token
    logit_tokens = min(completions, step.chunk_tokens)
    return {
        "weights": shape.parameters * BF16,
        "adapters": lora_parameters(shape, step.lora_rank) * 4 * FP32,
        "activations": activations,
        "logits": logit_tokens * shape.vocab * (BF16 + FP32 + FP32),  # head output, float copy, log-softmax
        "kv_cache": step.users
        * step.paths
        * (step.prompt + step.completion)
        * shape.layers
        * 2
        * shape.kv_heads
        * shape.head_dim
        * BF16,
    }


@dataclass(frozen=True)
class SFTStep:
    """One step of the batched SFT engine with ``softmax: full`` (``model/sft_batched.py``)."""

    users: int = 384  # sft.batch_size
    user_tokens: int = 160  # padded length of a length bucket's user prompts (run whole: share_prefix [items])
    items: int = 1682  # the whole catalog, encoded with gradient every step
    item_tokens: int = 30  # an item prompt's own tokens after the shared prefix (run once a step)
    chunk_items: int | None = None  # sft.item_chunk_size: items whose graph exists at once (None: all)
    lora_rank: int = 4


def sft_estimate(shape: Shape, step: SFTStep) -> dict[str, float]:
    """Bytes by part for one SFT step: bf16 weights, LoRA in bf16 with fp32 masters and AdamW (4 + 16 bytes a
    parameter), and the bf16 activations autograd keeps for the users' and the items' tokens. The adapters
    compute in bf16 (``MasterWeights``), so peft makes no fp32 copy of their inputs; each keeps A's rank-r
    output. With ``chunk_items`` the gradient-cache trick holds one chunk's graph at a time, plus the items'
    states (fp32) and their gradient."""
    per_token = activation_bytes_per_token_layer(shape) + BF16 * 7 * step.lora_rank
    items_in_graph = min(step.chunk_items or step.items, step.items)
    return {
        "weights": shape.parameters * BF16,
        "adapters": lora_parameters(shape, step.lora_rank) * (BF16 + 4 * FP32),
        "users": shape.layers * step.users * step.user_tokens * per_token,
        "items": shape.layers * items_in_graph * step.item_tokens * per_token
        + (2 * step.items * shape.hidden * FP32 if step.chunk_items else 0),
    }


def print_sft_table(user_tokens: int, item_tokens: int, margin: float) -> None:
    """The SFT settings the GPU profiles choose between, estimated and with the measured margin applied."""
    shape = BACKBONES[0]
    variants = {
        "384 users, whole catalog in one graph": SFTStep(user_tokens=user_tokens, item_tokens=item_tokens),
        "384 users, item_chunk_size 256": SFTStep(user_tokens=user_tokens, item_tokens=item_tokens, chunk_items=256),
        "256 users, whole catalog": SFTStep(users=256, user_tokens=user_tokens, item_tokens=item_tokens),
        "192 users, whole catalog": SFTStep(users=192, user_tokens=user_tokens, item_tokens=item_tokens),
    }
    print(
        f"\nSFT step, SmolLM2-135M, user prompts {user_tokens} tokens, item prompts {item_tokens} own tokens; GB (2^30)"
    )
    print(f"(x {margin:.2f}: the measured H200 peak over this estimate at the measured shape)\n")
    print("| setting | weights + adapters | users | items | estimate | with margin | fits 80 GB | fits 141 GB |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for label, step in variants.items():
        parts = sft_estimate(shape, step)
        total = sum(parts.values())
        cells = (
            f"{(parts['weights'] + parts['adapters']) / GB:.2f} | {parts['users'] / GB:.1f} | {parts['items'] / GB:.1f}"
        )
        fits = ["yes" if total * margin < limit * GB else "no" for limit in (80, 141)]
        print(f"| {label} | {cells} | {total / GB:.1f} | {total * margin / GB:.1f} | {fits[0]} | {fits[1]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", type=int, default=2048)
    parser.add_argument("--completion", type=int, default=512)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--paths", type=int, default=4)
    parser.add_argument("--sft", action="store_true", help="the SFT step's table instead (token lengths below)")
    parser.add_argument("--user-tokens", type=int, default=160, help="SFT: padded user prompt length")
    parser.add_argument("--item-tokens", type=int, default=30, help="SFT: an item prompt's own tokens")
    parser.add_argument("--margin", type=float, default=1.0, help="SFT: measured peak / estimate, applied to each row")
    args = parser.parse_args()
    if args.sft:
        print_sft_table(args.user_tokens, args.item_tokens, args.margin)
        return
    base = dict(users=args.users, paths=args.paths, prompt=args.prompt, completion=args.completion)
    variants = {
        "unchunked logits": Step(**base, chunk_tokens=10**9),
        "chunked logits": Step(**base),
        "chunked, policy_micro_batch 4": Step(**base, micro_users=4),
        "chunked, policy_micro_batch 2": Step(**base, micro_users=2),
        "chunked, policy_micro_batch 1": Step(**base, micro_users=1),
        "chunked, policy_micro_batch 2, checkpointing": Step(**base, micro_users=2, checkpointing=True),
    }
    print(
        f"\nRecPO step, B={args.users} users × G={args.paths} paths, prompt {args.prompt} + completion "
        f"{args.completion} tokens, bf16 weights, fp32 LoRA r=4 + AdamW; GB (2^30 bytes)\n"
    )
    print("| backbone | setting | weights | adapters | activations | logits | kv cache | total | fits 80 GB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for shape in BACKBONES:
        for label, step in variants.items():
            parts = estimate(shape, step)
            # the rollout's cache is freed before the update: the peak is the larger of the two phases
            update = parts["weights"] + parts["adapters"] + parts["activations"] + parts["logits"]
            total = max(update, parts["weights"] + parts["adapters"] + parts["kv_cache"])
            cells = " | ".join(
                f"{parts[k] / GB:.2f}" for k in ("weights", "adapters", "activations", "logits", "kv_cache")
            )
            print(f"| {shape.name} | {label} | {cells} | {total / GB:.1f} | {'yes' if total < 80 * GB else 'no'} |")


if __name__ == "__main__":
    main()
