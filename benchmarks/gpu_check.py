"""The model and RecPO code on a CUDA device, checked against the CPU on the tiny random backbone.

Prints a table of checks (not a test: CI has no GPU). Needs only torch, transformers, peft,
tokenizers, safetensors and tqdm, so it runs on a GPU machine without the Kedro/MLflow stack:
  PYTHONPATH=src:. python benchmarks/gpu_check.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from r2ec_pipeline.config import AdapterParams, RecPOParams
from r2ec_pipeline.model.adapters import attach_adapters
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel
from r2ec_pipeline.model.generation import generate_reasoning
from r2ec_pipeline.model.tiny_backbone import build_tiny_backbone
from r2ec_pipeline.rl.step import Batch, recpo_step

TITLES = ["Toy Story", "GoldenEye", "Four Rooms", "Get Shorty", "Copycat", "Babe"]


def _chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def _model(folder: Path, device: str) -> R2ecModel:
    torch.manual_seed(0)
    lm = attach_adapters(
        load_causal_lm(str(folder), folder / "cache"), AdapterParams(r=4, alpha=8, top_layers=None)
    ).to(device)
    return R2ecModel(
        lm,
        load_tokenizer(str(folder), folder / "cache"),
        DualHeadConfig(backbone=str(folder), similarity_temperature=0.1),
    ).eval()


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    torch.backends.cuda.matmul.allow_tf32 = False
    rows: list[tuple[str, str]] = [("device", torch.cuda.get_device_name(0)), ("torch", torch.__version__)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_backbone(Path(tmp) / "tiny")
        cpu, gpu = _model(folder, "cpu"), _model(folder, "cuda")
        items = [_chat(f"Title: {title}") + "<answer>" for title in TITLES]
        users = [_chat(f"next: {title}") + "<answer>" for title in TITLES[:3]]
        with torch.no_grad():
            diff = (cpu.encode(users) - gpu.encode(users).cpu()).abs().max().item()
            rows.append(("encode: max |cpu − cuda|", f"{diff:.2e}"))
            diff = (gpu.encode_shared_prefix(items) - gpu.encode(items)).abs().max().item()
            rows.append(("shared-prefix vs plain encode (cuda)", f"{diff:.2e}"))
            table_cpu = cpu.build_item_table(list(range(1, 7)), items, progress=False)
            table_gpu = gpu.build_item_table(list(range(1, 7)), items, progress=False)
            rows.append(("item table: max |cpu − cuda|", f"{(table_cpu - table_gpu.cpu()).abs().max().item():.2e}"))
            ranks_equal = torch.equal(
                cpu.score(cpu.encode(users)).argsort(1), gpu.score(gpu.encode(users)).argsort(1).cpu()
            )
            rows.append(("score ranking identical cpu/cuda", str(ranks_equal)))

        prompts = [_chat(f"next: {title}") for title in TITLES[:4]]
        result = generate_reasoning(
            gpu,
            prompts,
            max_new_tokens=8,
            do_sample=True,
            temperature=1.5,
            top_k=50,
            generator=torch.Generator(device="cuda").manual_seed(0),
        )
        worst = 0.0
        with torch.no_grad():
            for row, prompt in enumerate(prompts):
                tokens = result.token_ids[row]
                ids = torch.tensor([gpu.tokenize([prompt])["input_ids"][0].tolist() + tokens], device="cuda")
                logits = gpu.lm(input_ids=ids).logits[0, -len(tokens) - 1 : -1].float() / 1.5
                expected = (
                    F.log_softmax(logits, -1).gather(1, torch.tensor(tokens, device="cuda").view(-1, 1)).squeeze(1)
                )
                worst = max(worst, (result.logprobs[row] - expected).abs().max().item())
        rows.append(("generation log-probs vs teacher forcing (cuda)", f"{worst:.2e}"))

        gpu_train = _model(folder, "cuda")
        gpu_train.build_item_table(list(range(1, 7)), items, progress=False)
        optimizer = torch.optim.AdamW([p for p in gpu_train.lm.parameters() if p.requires_grad], lr=2e-2)
        batch = Batch(prompts=prompts[:3], targets=[1, 2, 3], histories=[[], [], []], target_prompts=items[:3])
        settings = RecPOParams(num_generations=4, temperature=1.0, top_k=None, max_completion_length=3, ndcg_cutoff=6)
        generator = torch.Generator(device="cuda").manual_seed(0)
        started = time.perf_counter()
        rewards = [recpo_step(gpu_train, optimizer, batch, settings, generator)[0]["reward_mean"] for _ in range(12)]
        torch.cuda.synchronize()
        rows.append(("RecPO reward, step 0 → mean of last 3 (cuda)", f"{rewards[0]:.3f} → {sum(rewards[-3:]) / 3:.3f}"))
        rows.append(("RecPO seconds per step (tiny model, cuda)", f"{(time.perf_counter() - started) / 12:.3f}"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
