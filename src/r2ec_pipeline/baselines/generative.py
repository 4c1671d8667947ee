"""Generative-recommender baseline: the LM writes the next item's title, constrained to the catalog.

This is how BIGRec/TIGER-style recommenders decode (and what R²ec's single scoring step replaces):
beam search over a prefix trie of every item's title tokens (ending with the closing answer tag), so
each finished beam is a real item. Used by the latency benchmark; the ranking it returns is exact
beam search, tested against brute-force title log-probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.hf_compat import cache_of, with_cache


@dataclass
class TrieNode:
    children: dict[int, TrieNode] = field(default_factory=dict)
    items: list[int] = field(default_factory=list)  # items whose token sequence ends here


def build_title_trie(
    model: R2ecModel, item_ids: Sequence[int], titles: Sequence[str], end: str = "</answer>"
) -> TrieNode:
    """A trie over ``title + end`` token sequences; items with the same title share a leaf."""
    root = TrieNode()
    token_lists = model.tokenizer([title + end for title in titles], add_special_tokens=False)["input_ids"]
    for item, tokens in zip(item_ids, token_lists, strict=True):
        node = root
        for token in tokens:
            node = node.children.setdefault(token, TrieNode())
        node.items.append(int(item))
    return root


@dataclass
class _Beam:
    score: float
    node: TrieNode
    parent: int  # row of the beam it extends in the previous step's cache
    token: int


@torch.no_grad()
def constrained_beam_search(
    model: R2ecModel, prompt: str, trie: TrieNode, beams: int = 10, top: int = 10
) -> list[tuple[int, float]]:
    """The ``top`` items (id, title log-probability) found by beam search with ``beams`` beams, best first."""
    batch = model.tokenize([prompt])
    out = model.lm(**batch, use_cache=True, logits_to_keep=1)
    cache, logits = cache_of(out), out.logits[:, -1].float()
    live = [_Beam(0.0, trie, 0, -1)]
    position = batch["input_ids"].shape[1]
    finished: list[tuple[float, int]] = []
    while live:
        logprobs = F.log_softmax(logits, dim=-1).cpu()
        candidates = [
            _Beam(beam.score + float(logprobs[row, token]), child, row, token)
            for row, beam in enumerate(live)
            for token, child in beam.node.children.items()
        ]
        candidates.sort(key=lambda beam: beam.score, reverse=True)
        live = []
        for candidate in candidates[:beams]:
            finished.extend((candidate.score, item) for item in candidate.node.items)
            if candidate.node.children:
                live.append(candidate)
        finished.sort(reverse=True)
        if not live or (len(finished) >= top and live[0].score <= finished[top - 1][0]):
            break  # scores only fall as a beam grows: no live beam can still enter the top list
        cache.reorder_cache(torch.tensor([beam.parent for beam in live], device=model.device))
        tokens = torch.tensor([[beam.token] for beam in live], device=model.device)
        out = model.lm(
            input_ids=tokens, position_ids=torch.full_like(tokens, position), **with_cache(cache), use_cache=True
        )
        cache, logits = cache_of(out), out.logits[:, -1].float()
        position += 1
    return [(item, score) for score, item in finished[:top]]
