"""Decoding from a merged copy: the unmerged model's greedy tokens and states, and it follows updates."""

import torch

from r2ec_pipeline.model.generation import generate_reasoning
from r2ec_pipeline.model.merged import MergedCopy
from tests.model.conftest import PROMPTS


def _perturb_adapters(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.lm.named_parameters():
            if "lora_" in name:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)


def _assert_same_generation(a, b):
    assert a.token_ids == b.token_ids and a.stop_reasons == b.stop_reasons
    torch.testing.assert_close(a.final_hidden, b.final_hidden, atol=1e-4, rtol=1e-4)  # float32 rounding only
    torch.testing.assert_close(a.direct_hidden, b.direct_hidden, atol=1e-4, rtol=1e-4)


def test_merged_copy_generates_the_unmerged_models_tokens_and_states(model):
    _perturb_adapters(model, 0)  # adapters that change the output (B starts at zero)
    merged = MergedCopy(model)
    assert not any(p.requires_grad for p in merged.model.lm.parameters())
    expected = generate_reasoning(model, PROMPTS, max_new_tokens=12, direct=True)
    _assert_same_generation(expected, generate_reasoning(merged.model, PROMPTS, max_new_tokens=12, direct=True))
    without_logprobs = generate_reasoning(merged.model, PROMPTS, max_new_tokens=12, direct=True, logprobs=False)
    assert without_logprobs.token_ids == expected.token_ids


def test_refresh_follows_the_policys_update(model):
    _perturb_adapters(model, 0)
    merged = MergedCopy(model)
    _perturb_adapters(model, 1)  # an optimizer step
    updated = generate_reasoning(model, PROMPTS, max_new_tokens=12, direct=True)
    stale = generate_reasoning(merged.model, PROMPTS, max_new_tokens=12, direct=True)
    assert not torch.allclose(stale.direct_hidden, updated.direct_hidden, atol=1e-3)
    _assert_same_generation(updated, generate_reasoning(merged.refresh(), PROMPTS, max_new_tokens=12, direct=True))
