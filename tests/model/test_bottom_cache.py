"""The frozen bottom cached per text: the same states as the full pass, for training and evaluation alike."""

import pytest
import torch

from r2ec_pipeline.config import AdapterParams
from r2ec_pipeline.model.adapters import attach_adapters
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.bottom_cache import (
    BottomCache,
    clear_shared_caches,
    frozen_depth,
)
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel
from tests.model.conftest import PROMPTS

ITEMS = [PROMPTS[1] + suffix + "<answer>" for suffix in ("Title: Babe", "Title: GoldenEye 1995 Action", "x")]


@pytest.fixture
def top_model(tiny_backbone_dir, tmp_path):
    """Adapters on the top layer only (of 2), moved off their zero init so they matter."""
    clear_shared_caches()
    torch.manual_seed(0)
    lm = attach_adapters(load_causal_lm(str(tiny_backbone_dir), tmp_path), AdapterParams(r=2, alpha=4, top_layers=1))
    with torch.no_grad():
        for name, parameter in lm.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    yield R2ecModel(
        lm.eval(), load_tokenizer(str(tiny_backbone_dir), tmp_path), DualHeadConfig(backbone=str(tiny_backbone_dir))
    )
    clear_shared_caches()


def _uncached(model, texts):
    model.bottom_cache_mb = 0
    try:
        return model.encode_shared_prefix(texts, min_prefix=4)
    finally:
        model.bottom_cache_mb = 1


def test_the_frozen_depth_is_the_first_adapted_layer(top_model, tiny_backbone_dir, tmp_path):
    assert frozen_depth(top_model.decoder.layers) == 1
    everywhere = attach_adapters(
        load_causal_lm(str(tiny_backbone_dir), tmp_path), AdapterParams(r=2, alpha=4, top_layers=None)
    )
    assert frozen_depth(everywhere.get_base_model().get_decoder().layers) == 0
    plain = load_causal_lm(str(tiny_backbone_dir), tmp_path)  # trainable as a whole: nothing is frozen
    assert frozen_depth(plain.get_decoder().layers) == 0


def test_cached_bottom_gives_the_uncached_states_and_is_reused(top_model):
    expected = _uncached(top_model, ITEMS)
    first = top_model.encode_shared_prefix(ITEMS, min_prefix=4)  # fills the cache
    again = top_model.encode_shared_prefix(list(reversed(ITEMS)), min_prefix=4)  # served from it
    torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(again, expected.flip(0), atol=1e-5, rtol=1e-4)
    _, store = top_model._bottom_cache()
    assert len(store) == 3 and store.hits >= 3
    torch.testing.assert_close(top_model.encode(ITEMS), expected, atol=1e-5, rtol=1e-4)


def test_a_prefix_run_once_gives_the_uncached_states_on_the_cached_path(top_model):
    expected = _uncached(top_model, ITEMS)
    prefix = top_model.shared_prefix(ITEMS, min_prefix=4)
    first = torch.cat(
        [
            top_model.encode_shared_prefix(ITEMS[:2], prefix=prefix),  # fills the cache
            top_model.encode_shared_prefix(ITEMS[2:], prefix=prefix),
        ]
    )
    again = top_model.encode_shared_prefix(ITEMS, prefix=prefix)  # served from it
    torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(again, expected, atol=1e-5, rtol=1e-4)


def test_texts_not_remembered_stay_out_of_the_cache(top_model):
    expected = _uncached(top_model, ITEMS)
    torch.testing.assert_close(
        top_model.encode_shared_prefix(ITEMS, min_prefix=4, remember=False), expected, atol=1e-5, rtol=1e-4
    )
    _, store = top_model._bottom_cache()
    assert len(store) == 0


def test_gradients_reach_the_adapters_through_the_cached_path(top_model):
    top_model.train()
    top_model.encode_shared_prefix(ITEMS, min_prefix=4)  # cache filled without gradient
    top_model.encode_shared_prefix(ITEMS, min_prefix=4).sum().backward()
    grads = [p.grad for n, p in top_model.lm.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_updated_adapters_are_seen_the_bottom_is_not_recomputed(top_model):
    top_model.encode_shared_prefix(ITEMS, min_prefix=4)
    with torch.no_grad():
        for name, parameter in top_model.lm.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.3)
    torch.testing.assert_close(
        top_model.encode_shared_prefix(ITEMS, min_prefix=4), _uncached(top_model, ITEMS), atol=1e-5, rtol=1e-4
    )


def test_the_cache_stays_within_its_byte_budget_dropping_the_oldest():
    cache = BottomCache(max_bytes=2 * 10 * 4 * 4)  # two entries of 10 × 4 float32
    for name in ("a", "b", "c"):
        cache.put(name, 0, torch.ones(10, 4))
    assert cache.get("a", 0) is None and cache.get("b", 0) is not None and cache.bytes == 320
    assert cache.get("c", 2).shape == (8, 4) and cache.get("c", 0).shape == (10, 4)
    cache.put("d", 5, torch.ones(10, 4))
    assert cache.get("d", 3) is None  # kept from token 5 on: cannot serve an earlier start


def test_chunked_item_gradient_on_the_cached_bottom_equals_the_one_pass_gradient(top_model):
    from r2ec_pipeline.model.losses import in_batch_infonce
    from r2ec_pipeline.model.sft import chunked_item_backward

    top_model.lm.train()
    users = [PROMPTS[0] + f"history {i}<answer>" for i in range(3)]
    items, ids = ITEMS + ITEMS[:2], torch.tensor([1, 2, 3, 1, 2])
    gradients = []
    for chunk in (None, 2):
        top_model.lm.zero_grad(set_to_none=True)
        states = top_model.encode_shared_prefix(users, min_prefix=4, remember=False)
        chunked_item_backward(top_model, states, items, chunk, lambda u, v: in_batch_infonce(u, v, ids[:3], 0.1, ids))
        gradients.append({n: p.grad.clone() for n, p in top_model.lm.named_parameters() if p.requires_grad})
    assert gradients[0] and any(g.abs().sum() > 0 for g in gradients[0].values())
    for name, one_pass in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], one_pass, atol=1e-5, rtol=1e-4)
