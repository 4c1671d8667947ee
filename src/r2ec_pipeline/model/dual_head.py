"""R²ec's dual-head model: one causal LM backbone, ``lm_head`` for reasoning, ``rec_head`` for items.

The rec head has no parameters of its own by default (method §3): its weight is the item table H,
row v = the last-layer hidden state at the last token of item v's prompt (which ends with the
answer tag), computed by the same backbone. A user's state h is the hidden state at the last token
of the answer tag after the user prompt (and the reasoning, when there is one); s(v) = cos(h, H[v]) / τ.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import Cache, PreTrainedModel, PreTrainedTokenizerBase

from r2ec_pipeline.config import ModelParams, PromptParams
from r2ec_pipeline.model.bottom_cache import (
    DEFAULT_BUDGET_MB,
    BottomCache,
    decoder_layers,
    frozen_depth,
    inject,
    shared_cache,
)
from r2ec_pipeline.model.hf_compat import cache_of, with_cache
from r2ec_pipeline.model.scoring import cosine_scores, mask_items


@dataclass(frozen=True)
class DualHeadConfig:
    """What defines a dual-head model beyond the backbone weights (saved with every checkpoint)."""

    backbone: str
    answer_tag: str = PromptParams.model_fields["answer_tag"].default  # the defaults are the parameters'
    similarity_temperature: float = ModelParams.model_fields["similarity_temperature"].default  # τ of method §3
    history_mask: Literal["full", "window"] = ModelParams.model_fields["history_mask"].default
    fingerprint: dict[str, int | str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def backbone_fingerprint(lm: PreTrainedModel) -> dict[str, int | str]:
    """Architecture facts a checkpoint must share with the backbone it is loaded onto."""
    config = lm.config
    return {
        "model_type": str(config.model_type),
        "hidden_size": int(config.hidden_size),
        "num_hidden_layers": int(config.num_hidden_layers),
        "vocab_size": int(config.vocab_size),
    }


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, for left or right padding alike."""
    width = attention_mask.shape[1]
    return width - 1 - attention_mask.flip(1).long().argmax(dim=1)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip padding, so a left-padded row sees the same positions as an unpadded one."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def common_prefix_length(token_lists: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by every list, leaving each at least one own token."""
    shortest = min(len(ids) for ids in token_lists)
    length = 0
    while length < shortest - 1 and all(ids[length] == token_lists[0][length] for ids in token_lists):
        length += 1
    return length


@dataclass
class SharedPrefix:
    """Token ids every text of a batch starts with and their KV cache (batch of one), from the full decoder."""

    ids: list[int]
    cache: Cache

    def for_batch(self, size: int) -> Cache:
        """The cache repeated for ``size`` rows, in new layer objects: passes that extend it leave this one as it is.

        The tensors are not copied (repeating makes new ones), so a prefix computed with grad keeps its graph.
        """
        cache = copy.copy(self.cache)
        cache.layers = [copy.copy(layer) for layer in self.cache.layers]
        cache.batch_repeat_interleave(size)
        return cache


def _check_item_ids(item_ids: Sequence[int], prompts: Sequence[str]) -> None:
    if len(item_ids) != len(prompts):
        raise ValueError(f"{len(item_ids)} item ids but {len(prompts)} item prompts")
    if min(item_ids) < 1:
        raise ValueError(f"item id 0 (or below) in the catalog: {min(item_ids)}; 0 is reserved")


class R2ecModel(nn.Module):
    """Backbone (optionally with LoRA adapters) + tokenizer + item table, with the R²ec operations."""

    def __init__(self, lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: DualHeadConfig) -> None:
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        self.config = config
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.register_buffer("item_table", torch.zeros(1, lm.config.hidden_size), persistent=False)
        self.bottom_cache_mb = DEFAULT_BUDGET_MB  # frozen bottom layers' outputs kept per text (0: off)

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    @property
    def decoder(self) -> nn.Module:
        """The transformer body without ``lm_head`` (adapters included): its output is the rec head's input."""
        base = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
        return base.get_decoder()

    @property
    def recomputes_activations(self) -> bool:
        """True while the model trains under gradient checkpointing.

        HF then drops every KV cache passed to a layer (transformers 5.17 even under ``no_grad``), so a
        cached prefix would vanish: the cache-sharing paths fall back to plain full-sequence passes.
        """
        return self.lm.training and self.checkpointing_enabled

    @property
    def checkpointing_enabled(self) -> bool:
        """Gradient checkpointing is on for the decoder's layers (it recomputes them while training)."""
        return any(getattr(layer, "gradient_checkpointing", False) for layer in self.decoder.layers)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """HF's gradient checkpointing on every decoder layer (non-reentrant: LoRA needs no input grads), or off."""
        base = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
        if enabled:
            enable = getattr(base, "activation_checkpointing_enable", None)  # transformers ≥ 5.2x; older: the alias
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        elif self.checkpointing_enabled:
            disable = getattr(base, "activation_checkpointing_disable", None) or base.gradient_checkpointing_disable
            disable()

    @property
    def num_items(self) -> int:
        """Catalog size |V| (row 0 of the table is padding)."""
        return self.item_table.shape[0] - 1

    def tokenize(self, texts: Sequence[str], padding_side: str = "left") -> dict[str, torch.Tensor]:
        """Batch-tokenize as the prompts stage counted them (``add_special_tokens=False``)."""
        self.tokenizer.padding_side = padding_side
        batch = self.tokenizer(list(texts), add_special_tokens=False, padding=True, return_tensors="pt")
        return {key: value.to(self.device) for key, value in batch.items()}

    def last_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last-layer hidden state at each row's last real token (B×d)."""
        out = self.decoder(  # the body only: no vocabulary logits, no per-layer states kept
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids(attention_mask),
            use_cache=False,
        )
        states = out.last_hidden_state
        rows = torch.arange(states.shape[0], device=states.device)
        return states[rows, last_token_index(attention_mask)]

    def encode(self, texts: Sequence[str], padding_side: str = "left") -> torch.Tensor:
        """Hidden states at the last token of each text (the texts end with the answer tag)."""
        batch = self.tokenize(texts, padding_side)
        return self.last_hidden(batch["input_ids"], batch["attention_mask"])

    def common_prefix_ids(self, texts: Sequence[str], min_prefix: int = 8) -> list[int]:
        """The token ids every text starts with (each keeps one own token); empty when fewer than ``min_prefix``."""
        token_lists = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        common = common_prefix_length(token_lists)
        return token_lists[0][:common] if common >= min_prefix else []

    @torch.no_grad()
    def shared_prefix(self, texts: Sequence[str], min_prefix: int = 8) -> SharedPrefix | None:
        """The token prefix every text shares, run once (no grad), to serve many ``encode_shared_prefix`` batches.

        Valid only while the weights stay as they are (one item-table build, one ranking pass).
        """
        ids = self.common_prefix_ids(texts, min_prefix)
        return self.run_prefix(ids) if ids else None

    def run_prefix(self, ids: list[int]) -> SharedPrefix:
        """``ids`` through the whole decoder (adapters included), keeping their KV cache (and graph, under grad)."""
        out = self.decoder(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
        return SharedPrefix(ids, cache_of(out))

    def encode_shared_prefix(
        self, texts: Sequence[str], min_prefix: int = 8, prefix: SharedPrefix | None = None, remember: bool = True
    ) -> torch.Tensor:
        """Same result as ``encode`` when all texts share a token prefix, for a fraction of the compute.

        The common prefix (system turn and instruction: most of an item prompt) is run once; its KV
        cache is repeated across the batch, and only each text's own suffix is run on top of it.
        ``prefix`` (from ``shared_prefix`` over a larger set of texts) saves running it per batch.
        Without it gradients flow through the prefix as well, so this also serves training.
        ``remember=False`` keeps texts seen once (training samples) out of the frozen-bottom cache (it is still read).
        """
        if self.recomputes_activations:  # HF drops caches under checkpointing: no prefix to share
            return self.encode(texts)
        token_lists = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        if prefix is None or not all(
            ids[: len(prefix.ids)] == prefix.ids and len(ids) > len(prefix.ids) for ids in token_lists
        ):
            common = common_prefix_length(token_lists)
            if common < min_prefix:
                return self.encode(texts)
            prefix = self.run_prefix(token_lists[0][:common])
        common = len(prefix.ids)
        cache = prefix.for_batch(len(token_lists))
        suffixes = [ids[common:] for ids in token_lists]
        width = max(len(ids) for ids in suffixes)
        pad = self.tokenizer.pad_token_id
        suffix_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in suffixes], device=self.device)
        suffix_mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in suffixes], device=self.device)
        mask = torch.cat([torch.ones(len(suffixes), common, dtype=torch.long, device=self.device), suffix_mask], 1)
        positions = (common + torch.arange(width, device=self.device)).expand(len(suffixes), -1)
        bottom = self._bottom_cache()
        if bottom is None:
            out = self.decoder(
                input_ids=suffix_ids, attention_mask=mask, position_ids=positions, **with_cache(cache), use_cache=True
            )
        else:  # only the adapted layers run, on the frozen bottom's cached output
            depth, store = bottom
            states = self._bottom_states(texts, token_lists, prefix, depth, store, remember)
            states = states.to(self.device, self.decoder.embed_tokens.weight.dtype)
            with decoder_layers(self.decoder, inject(states, self.decoder.layers[depth:])):
                out = self.decoder(
                    inputs_embeds=states,
                    attention_mask=mask,
                    position_ids=positions,
                    **with_cache(cache),
                    use_cache=True,
                )
        states = out.last_hidden_state
        rows = torch.arange(len(suffixes), device=self.device)
        return states[rows, suffix_mask.sum(dim=1) - 1]

    def _bottom_cache(self) -> tuple[int, BottomCache] | None:
        """(frozen depth, the cache shared by models with this frozen bottom), or None when nothing is frozen."""
        depth = frozen_depth(self.decoder.layers) if self.bottom_cache_mb > 0 else 0
        if depth < 1:
            return None
        key = (self.config.backbone, tuple(sorted(backbone_fingerprint(self.lm).items())), depth)
        return depth, shared_cache(key, self.bottom_cache_mb * 2**20)

    @torch.no_grad()
    def _bottom_states(
        self,
        texts: Sequence[str],
        token_lists: Sequence[list[int]],
        prefix: SharedPrefix,
        depth: int,
        store: BottomCache,
        remember: bool = True,
    ) -> torch.Tensor:
        """The frozen bottom's output for each text's tokens after the prefix (right-padded), computing the missing.

        The missing run through the bottom layers on the prefix's cache: its bottom layers' entries are
        the frozen layers' own, whatever the adapters above them.
        """
        common = len(prefix.ids)
        found = [store.get(text, common) for text in texts]
        missing = [row for row, states in enumerate(found) if states is None]
        if missing:
            pad = self.tokenizer.pad_token_id
            suffixes = [token_lists[row][common:] for row in missing]
            width = max(len(ids) for ids in suffixes)
            suffix_mask = torch.tensor(
                [[1] * len(ids) + [0] * (width - len(ids)) for ids in suffixes], device=self.device
            )
            with decoder_layers(self.decoder, self.decoder.layers[:depth], final_norm=False):
                out = self.decoder(
                    input_ids=torch.tensor([ids + [pad] * (width - len(ids)) for ids in suffixes], device=self.device),
                    attention_mask=torch.cat(
                        [torch.ones(len(missing), common, dtype=torch.long, device=self.device), suffix_mask], 1
                    ),
                    position_ids=(common + torch.arange(width, device=self.device)).expand(len(missing), -1),
                    **with_cache(prefix.for_batch(len(missing))),
                    use_cache=True,
                )
            for index, row in enumerate(missing):
                found[row] = out.last_hidden_state[index, : len(suffixes[index])]
                if remember:
                    store.put(texts[row], common, found[row])
        width = max(len(states) for states in found)
        return torch.stack([F.pad(states.float(), (0, 0, 0, width - len(states))) for states in found])

    def user_texts(self, prompts: Sequence[str], reasoning: Sequence[str] | None = None) -> list[str]:
        """Prompt + (reasoning) + answer tag: what the rec head reads for each user (method §3)."""
        tag = self.config.answer_tag
        if reasoning is None:
            return [prompt + tag for prompt in prompts]
        return [p + r if r.endswith(tag) else p + r + tag for p, r in zip(prompts, reasoning, strict=True)]

    @torch.no_grad()
    def build_item_table(
        self, item_ids: Sequence[int], prompts: Sequence[str], batch_size: int = 32, progress: bool = True
    ) -> torch.Tensor:
        """Encode every item prompt into H ((max id + 1) × d); row 0 stays zero (item 0 is not real)."""
        _check_item_ids(item_ids, prompts)
        table = torch.zeros(max(item_ids) + 1, self.lm.config.hidden_size, device=self.device)
        self.item_table = self._encode_rows(table, item_ids, prompts, batch_size, progress)
        return self.item_table

    @torch.no_grad()
    def update_item_rows(
        self, item_ids: Sequence[int], prompts: Sequence[str], batch_size: int = 32, progress: bool = True
    ) -> torch.Tensor:
        """Encode only these items into their rows (the table grows with zero rows up to the largest id);
        every other row is kept bit for bit. A catalog update: new items without re-encoding the catalog."""
        _check_item_ids(item_ids, prompts)
        old = self.item_table.detach()
        table = torch.zeros(max(old.shape[0], max(item_ids) + 1), old.shape[1], dtype=old.dtype, device=self.device)
        table[: old.shape[0]] = old.to(self.device)
        self.item_table = self._encode_rows(table, item_ids, prompts, batch_size, progress)
        return self.item_table

    def _encode_rows(
        self, table: torch.Tensor, item_ids: Sequence[int], prompts: Sequence[str], batch_size: int, progress: bool
    ) -> torch.Tensor:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
        was_training = self.lm.training
        self.lm.eval()
        prefix = self.shared_prefix(prompts)  # the instruction up to the item's own text: run once, not per batch
        for start in tqdm(range(0, len(order), batch_size), desc="item table", disable=not progress, leave=False):
            chunk = order[start : start + batch_size]
            table[[item_ids[i] for i in chunk]] = self.encode_shared_prefix(
                [prompts[i] for i in chunk], prefix=prefix
            ).float()
        self.lm.train(was_training)
        return table

    def score(self, user_states: torch.Tensor, histories: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
        """cos(h, H[v]) / τ over the whole catalog, the listed history items masked to −inf."""
        if self.num_items < 1:
            raise RuntimeError("the item table is empty: call build_item_table first")
        scores = cosine_scores(user_states, self.item_table, self.config.similarity_temperature)
        return mask_items(scores, histories) if histories is not None else scores
