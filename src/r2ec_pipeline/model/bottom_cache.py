"""The frozen bottom of the backbone, computed once per text.

With LoRA adapters on the top layers only (``model.adapters.top_layers``, the CPU profile), the layers
below the first adapted one are the base model's and never change: their output for a given text is
the same for the zero-shot, SFT and RecPO models and at every step of training. ``BottomCache`` keeps
that output (the hidden states entering the first adapted layer) per text, so re-encoding an item
table or ranking the same users again runs only the adapted layers on top of it.

The cache is shared by every model on the same backbone with the same frozen depth (one process, e.g.
one Kedro run), bounded in bytes, least recently used entries dropped first. It stores float32 on the
CPU, so results equal the uncached path up to float rounding.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

DEFAULT_BUDGET_MB = 1024


class BottomCache:
    """Per text: the bottom layers' hidden states from token ``start`` on (``start`` = where a shared prefix ended)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[int, torch.Tensor]] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, text: str, start: int) -> torch.Tensor | None:
        """States of tokens ``start:`` of ``text``, if kept (an entry kept from an earlier start serves too)."""
        entry = self._entries.get(text)
        if entry is None or entry[0] > start:
            self.misses += 1
            return None
        self._entries.move_to_end(text)
        self.hits += 1
        return entry[1][start - entry[0] :]

    def put(self, text: str, start: int, states: torch.Tensor) -> None:
        """Keep the states of tokens ``start:`` of ``text`` (a copy on the CPU), evicting the oldest beyond the budget."""
        size = states.numel() * 4  # kept as float32
        if size > self.max_bytes:
            return
        if text in self._entries:
            self.bytes -= self._entries.pop(text)[1].numel() * 4
        self._entries[text] = (start, states.detach().float().to("cpu", copy=True))
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped.numel() * 4


_SHARED: dict[tuple, BottomCache] = {}


def shared_cache(key: tuple, max_bytes: int) -> BottomCache:
    """The cache of every model whose frozen bottom is the same (``key``: backbone, its fingerprint, depth)."""
    if key not in _SHARED:
        _SHARED[key] = BottomCache(max_bytes)
    return _SHARED[key]


def clear_shared_caches() -> None:
    """Drop every shared cache (frees its memory; the next encodings fill it again)."""
    _SHARED.clear()


def frozen_depth(layers: Sequence[nn.Module]) -> int:
    """How many bottom decoder layers hold neither an adapter nor a trainable weight (0: none is frozen)."""
    for index, layer in enumerate(layers):
        if any("lora_" in name or parameter.requires_grad for name, parameter in layer.named_parameters()):
            return index
    return 0  # nothing adapted at all: a plain backbone, which may be trained as a whole


class _Inject(nn.Module):
    """Stands in for the frozen bottom: returns its cached output whatever it is given."""

    attention_type = "full_attention"  # read by models that pick a mask per layer (e.g. Gemma-2)

    def __init__(self, states: torch.Tensor) -> None:
        super().__init__()
        self.states = states

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.states


@contextmanager
def decoder_layers(decoder: nn.Module, layers: Sequence[nn.Module], final_norm: bool = True) -> Iterator[None]:
    """Run ``decoder`` with only ``layers`` (and without its final norm if not ``final_norm``) inside the block.

    The layers keep their attention's ``layer_idx``, so a KV cache filled by a full pass over a shared
    prefix still serves them; the mask is sized from the cache's first layer, which that prefix pass
    filled too.
    """
    saved_layers, saved_norm = decoder.layers, decoder.norm
    decoder.layers = nn.ModuleList(layers)
    if not final_norm:
        decoder.norm = nn.Identity()
    try:
        yield
    finally:
        decoder.layers, decoder.norm = saved_layers, saved_norm


def inject(states: torch.Tensor, top_layers: Sequence[nn.Module]) -> list[nn.Module]:
    """The layer list that feeds ``states`` (the frozen bottom's output) into ``top_layers``."""
    return [_Inject(states), *top_layers]
