"""Constrained beam search over a title trie returns real items, ranked by their title log-probability."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from r2ec_pipeline.baselines.generative import build_title_trie, constrained_beam_search
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel

TITLES = {1: "Toy Story", 2: "Toy Story 2", 3: "Drama", 4: "Comedy Action", 5: "Drama"}
PROMPT = "<|im_start|>user\nHere is a user's history<|im_end|>\n<|im_start|>assistant\n<answer>"


@pytest.fixture
def model(tiny_backbone_dir, tmp_path):
    torch.manual_seed(0)
    lm = load_causal_lm(str(tiny_backbone_dir), tmp_path).eval()
    return R2ecModel(lm, load_tokenizer(str(tiny_backbone_dir), tmp_path), DualHeadConfig(backbone="tiny")).eval()


def _title_logprob(model, title: str) -> float:
    prompt = model.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    tokens = model.tokenizer(title + "</answer>", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model.lm(input_ids=torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1 : -1]
    return float(F.log_softmax(logits.float(), -1).gather(1, torch.tensor(tokens)[:, None]).sum())


def test_wide_beam_search_ranks_every_item_by_its_title_logprob(model):
    trie = build_title_trie(model, list(TITLES), list(TITLES.values()))
    found = constrained_beam_search(model, PROMPT, trie, beams=10, top=10)
    assert sorted(item for item, _ in found) == [1, 2, 3, 4, 5]  # same-title items share a leaf, both listed
    expected = {item: _title_logprob(model, title) for item, title in TITLES.items()}
    for item, score in found:
        assert score == pytest.approx(expected[item], abs=1e-3)
    assert [score for _, score in found] == sorted((score for _, score in found), reverse=True)


def test_narrow_beam_returns_at_most_top_real_items(model):
    trie = build_title_trie(model, list(TITLES), list(TITLES.values()))
    found = constrained_beam_search(model, PROMPT, trie, beams=2, top=2)
    assert 1 <= len(found) <= 2 and {item for item, _ in found} <= set(TITLES)
