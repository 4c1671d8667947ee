"""The bfloat16 path on the tiny model: frozen weights bf16, adapters and the rec head's math float32."""

import copy

import pytest
import torch

from r2ec_pipeline.config import SFTParams
from r2ec_pipeline.model.factory import place_model, resolve_device, resolve_dtype
from r2ec_pipeline.model.generation import generate_reasoning
from r2ec_pipeline.model.sft import train_sft
from r2ec_pipeline.rl.step import recpo_step
from tests.rl.toy_task import SETTINGS, item_prompts, toy_batch, toy_model


def test_auto_precision_is_bf16_on_cuda_and_fp32_on_cpu():
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")


def test_bf16_backbone_keeps_float32_adapters_and_scores_like_float32(tiny_backbone_dir, tmp_path):
    reference = toy_model(tiny_backbone_dir, tmp_path)
    model = place_model(copy.deepcopy(reference), torch.device("cpu"), torch.bfloat16)
    dtypes = {p.dtype for n, p in model.lm.named_parameters() if "lora_" in n}
    frozen = {p.dtype for n, p in model.lm.named_parameters() if "lora_" not in n}
    assert dtypes == {torch.float32} and frozen == {torch.bfloat16}
    items = item_prompts()
    table = model.build_item_table(list(items), list(items.values()), progress=False)
    assert table.dtype == torch.float32
    batch = toy_batch()
    with torch.no_grad():
        states, expected = (
            model.encode(model.user_texts(batch.prompts)),
            reference.encode(reference.user_texts(batch.prompts)),
        )
        assert states.dtype == torch.bfloat16
        scores = model.score(states)
    assert scores.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(states.float(), expected, dim=-1)
    assert cosine.min() > 0.99, cosine  # bf16 rounding, not another model


def test_bf16_generation_recpo_and_sft_run_and_move_the_adapters(tiny_backbone_dir, tmp_path):
    model = place_model(toy_model(tiny_backbone_dir, tmp_path), torch.device("cpu"), torch.bfloat16)
    generation = generate_reasoning(model, toy_batch().prompts, max_new_tokens=4)
    assert generation.final_hidden.dtype == torch.float32 and generation.logprobs[0].dtype == torch.float32
    before = {n: p.detach().clone() for n, p in model.lm.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.lm.parameters() if p.requires_grad], lr=1e-2)
    metrics, _ = recpo_step(model, optimizer, toy_batch(), SETTINGS, torch.Generator().manual_seed(0))
    assert metrics["skipped"] == 0.0 and all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert any(not torch.equal(p, before[n]) for n, p in model.lm.named_parameters() if p.requires_grad)
    batch = toy_batch((1, 2, 3, 4))
    result = train_sft(
        model,
        batch.prompts,
        batch.targets,
        item_prompts(),
        None,
        SFTParams(steps=2, batch_size=4, negatives=2, item_chunk_size=2),
    )
    assert all(torch.isfinite(torch.tensor(p["value"])) for p in result.history["train.loss"])
    assert {p.dtype for n, p in model.lm.named_parameters() if p.requires_grad} == {torch.float32}
