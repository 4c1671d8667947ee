"""SFT for accelerators (method §4): texts tokenized and length-bucketed once, epochs without host syncs.

The CPU engine (``model/sft.py``) tokenizes every batch again, caches the frozen bottom layers and
syncs with the host every step; on a GPU that host work, not arithmetic, sets the pace. This engine:

- tokenizes every user and item text once and keeps them on the device, split into the prefix every
  text shares (system turn and instruction: 42 of an ML-100k item prompt's ~70 SmolLM2 tokens), run
  once a pass with its KV cache repeated, and each text's own tokens;
- visits every training sample exactly once per epoch, in batches of similar length (``length_batches``);
- with ``softmax: full`` encodes the whole catalog with gradient every step (chunked by the gradient-cache
  trick when ``item_chunk_size`` is set) and masks each user's earlier items, as evaluation ranks;
  with ``softmax: sampled`` it is the CPU engine's in-batch softmax with sampled negatives;
- computes in bfloat16 adapters with float32 master weights when ``adapter_dtype: bfloat16``
  (``MasterWeights``): peft then runs the adapters without a cast per projection, while AdamW's
  state and updates keep float32 precision;
- reads losses back only at log and validation steps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from r2ec_pipeline.config import SFTParams
from r2ec_pipeline.model.dual_head import R2ecModel, SharedPrefix, common_prefix_length
from r2ec_pipeline.model.generation import MIN_SHARED_PREFIX
from r2ec_pipeline.model.hf_compat import with_cache
from r2ec_pipeline.model.losses import in_batch_infonce

logger = logging.getLogger(__name__)


@dataclass
class TokenTable:
    """Token ids of many texts in one device tensor: the prefix they all share, and each text's own part.

    The own parts are right-padded after the prefix (``ids``); without a shared prefix (fewer than
    ``MIN_SHARED_PREFIX`` common tokens) ``prefix`` is empty and ``ids`` holds whole texts.
    """

    prefix: list[int]  # token ids every text starts with (each text keeps at least one own token)
    ids: torch.Tensor  # texts × longest own part, right-padded with the pad id
    lengths: np.ndarray  # own tokens per text (host copy: batch widths need no device sync)
    device_lengths: torch.Tensor  # the same on the device (attention masks, last-token rows)

    @classmethod
    def of(cls, model: R2ecModel, texts: Sequence[str], share_prefix: bool = True) -> TokenTable:
        """Tokenize ``texts`` once, as the prompts stage counted them (no special tokens added)."""
        lists = model.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        if len(lists) == 0 or min(len(ids) for ids in lists) < 1:
            raise ValueError("every text must have at least one token")
        common = common_prefix_length(lists) if share_prefix and len(lists) > 1 else 0
        common = common if common >= MIN_SHARED_PREFIX else 0
        own = [ids[common:] for ids in lists]
        lengths = np.array([len(ids) for ids in own], dtype=np.int64)
        ids = torch.full((len(own), int(lengths.max())), model.tokenizer.pad_token_id, dtype=torch.long)
        for row, tokens in enumerate(own):
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return cls(lists[0][:common], ids.to(model.device), lengths, torch.as_tensor(lengths, device=model.device))

    def batch(self, rows: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(own token ids, their attention mask) of ``rows``, ``width`` columns wide (at least their longest)."""
        ids = self.ids[rows, :width]
        mask = (torch.arange(width, device=ids.device).view(1, -1) < self.device_lengths[rows].view(-1, 1)).long()
        return ids, mask


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches: every index exactly once, similar lengths together, batches in random order.

    The indices are shuffled, then stably sorted by length (equal lengths stay shuffled), cut into
    batches of ``batch_size`` (the last may be smaller), and the batches' order is shuffled.
    """
    shuffled = rng.permutation(len(lengths))
    ordered = shuffled[np.argsort(lengths[shuffled], kind="stable")]
    batches = [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def encode_rows(
    model: R2ecModel, table: TokenTable, rows: np.ndarray, prefix: SharedPrefix | None = None
) -> torch.Tensor:
    """Last-token hidden states of ``rows`` of ``table`` (gradient if enabled).

    With a shared prefix, the prefix runs once (a one-row pass, with gradient; or ``prefix``, run by the
    caller for several calls) and its KV cache is repeated for the rows; only each text's own tokens run
    on top of it. Without one, the right-padded texts run with no attention mask: causal attention keeps
    every real token from seeing the pads after it, so the last real token's state is exact, and the
    attention kernel needs no mask (on a GPU: flash attention with grouped KV heads, no KV copy per head).
    """
    rows = np.asarray(rows)
    width = int(table.lengths[rows].max())
    device_rows = torch.as_tensor(rows, device=table.ids.device)
    ids, mask = table.batch(device_rows, width)
    last = table.device_lengths[device_rows] - 1  # each row's last own token
    if not table.prefix:
        out = model.decoder(input_ids=ids, use_cache=False)
    else:
        common = len(table.prefix)
        cache = (prefix or model.run_prefix(table.prefix)).for_batch(len(rows))
        full_mask = torch.cat([torch.ones(len(rows), common, dtype=mask.dtype, device=mask.device), mask], dim=1)
        positions = (common + torch.arange(width, device=ids.device)).expand(len(rows), -1)
        out = model.decoder(
            input_ids=ids, attention_mask=full_mask, position_ids=positions, **with_cache(cache), use_cache=True
        )
    return out.last_hidden_state[torch.arange(len(rows), device=ids.device), last]


def length_groups(lengths: np.ndarray, groups: int) -> list[np.ndarray]:
    """Indices sorted by length, cut into ``groups`` nearly equal runs: each run's padded width is close
    to its texts' own lengths (one padded batch of the catalog would be ~1.6× its tokens on ML-100k)."""
    order = np.argsort(lengths, kind="stable")
    return [run for run in np.array_split(order, min(groups, len(order))) if len(run)]


def encode_catalog(model: R2ecModel, table: TokenTable, groups: int) -> torch.Tensor:
    """Every row of ``table`` encoded (gradient if enabled) in ``groups`` passes of similar lengths, rows in
    table order; the shared prefix runs once for all of them."""
    prefix = model.run_prefix(table.prefix) if table.prefix else None
    runs = length_groups(table.lengths, groups)
    states = torch.cat([encode_rows(model, table, run, prefix) for run in runs])
    order = torch.as_tensor(np.concatenate(runs), device=states.device)
    return states[torch.argsort(order)]


@dataclass
class HistoryIndex:
    """Each sample's earlier items as CSR on the device, to mask them in the catalog softmax."""

    offsets: torch.Tensor  # samples + 1
    columns: torch.Tensor  # flat catalog columns
    counts: np.ndarray  # items per sample (host copy: the mask's size needs no device sync)

    @classmethod
    def of(cls, histories: Sequence[Sequence[int]], column_of: torch.Tensor) -> HistoryIndex:
        """``column_of``: item id → catalog column, −1 where no item. Ids outside the catalog raise (as
        ``scoring.mask_items`` does): a −1 would silently mask the last column instead."""
        counts = np.array([len(h) for h in histories], dtype=np.int64)
        offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)]), device=column_of.device)
        flat = np.fromiter((int(i) for h in histories for i in h), dtype=np.int64, count=int(counts.sum()))
        known = column_of.cpu().numpy()
        unknown = (flat < 0) | (flat >= len(known))
        unknown[~unknown] = known[flat[~unknown]] < 0
        if unknown.any():
            bad = sorted({int(i) for i in flat[unknown]})
            raise ValueError(
                f"unknown item ids in history: {bad[:10]} (not in the catalog of {int((known >= 0).sum())} items)"
            )
        return cls(offsets, column_of[torch.as_tensor(flat, device=column_of.device)], counts)

    def mask(self, rows: np.ndarray, width: int) -> torch.Tensor:
        """rows × width booleans, True at each row's earlier items (no host sync)."""
        total = int(self.counts[rows].sum())
        device_rows = torch.as_tensor(rows, device=self.offsets.device)
        starts = self.offsets[device_rows]
        counts = self.offsets[device_rows + 1] - starts
        owner = torch.repeat_interleave(torch.arange(len(rows), device=starts.device), counts, output_size=total)
        # element k of row r sits at starts[r] + (k − items of the rows before r)
        first = torch.repeat_interleave(starts - torch.cumsum(counts, 0) + counts, counts, output_size=total)
        flat = first + torch.arange(total, device=starts.device)
        mask = torch.zeros(len(rows), width, dtype=torch.bool, device=starts.device)
        mask[owner, self.columns[flat]] = True
        return mask


def full_catalog_infonce(
    user_states: torch.Tensor,
    item_states: torch.Tensor,
    target_columns: torch.Tensor,
    temperature: float,
    excluded: torch.Tensor | None = None,
) -> torch.Tensor:
    """−mean log p(target) under softmax over every catalog item, each encoded fresh (gradient everywhere).

    logits[i, j] = cos(h_i, e_j) / τ; ``excluded`` (rows × items) masks each row's earlier items, never its target.
    """
    logits = F.normalize(user_states.float(), dim=-1) @ F.normalize(item_states.float(), dim=-1).T / temperature
    if excluded is not None:
        rows = torch.arange(len(target_columns), device=logits.device)
        excluded = excluded.clone()
        excluded[rows, target_columns] = False
        logits = logits.masked_fill(excluded, float("-inf"))
    return F.cross_entropy(logits, target_columns)


class MasterWeights:
    """Trainable weights computed in ``dtype`` with float32 master copies that the optimizer updates.

    bfloat16 adapters on a bfloat16 backbone run without peft's per-projection float32 casts; their
    updates (lr × a small gradient) would round away in bfloat16, so AdamW steps float32 copies, which
    are written back after each step. With ``dtype`` float32 the masters are the weights themselves.
    """

    def __init__(self, parameters: Sequence[torch.nn.Parameter], dtype: torch.dtype) -> None:
        self.parameters = list(parameters)
        self.separate = dtype != torch.float32
        if self.separate:
            self.masters = [torch.nn.Parameter(p.detach().float().clone()) for p in self.parameters]
            for parameter in self.parameters:
                parameter.data = parameter.data.to(dtype)
        else:
            self.masters = self.parameters

    def step(self, optimizer: torch.optim.Optimizer, max_grad_norm: float) -> torch.Tensor:
        """Gradients to the masters, clip, step, weights refreshed from the masters; the norm (on the device)."""
        if self.separate:
            for master, parameter in zip(self.masters, self.parameters, strict=True):
                master.grad = None if parameter.grad is None else parameter.grad.float()
                parameter.grad = None
        norm = torch.nn.utils.clip_grad_norm_(self.masters, max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if self.separate:
            with torch.no_grad():
                torch._foreach_copy_(self.parameters, self.masters)
        return norm

    def release(self) -> None:
        """The weights back in float32, holding the masters' values (what the rest of the project expects)."""
        if self.separate:
            for master, parameter in zip(self.masters, self.parameters, strict=True):
                parameter.data = master.detach().clone()
            self.masters = self.parameters
            self.separate = False


@dataclass
class SFTData:
    """What batched SFT trains on, tokenized once: users, their targets and histories, the catalog."""

    users: TokenTable
    target_ids: np.ndarray  # item id per sample
    items: TokenTable  # catalog item prompts, in ``item_ids`` order
    item_ids: np.ndarray  # catalog column → item id
    column_of: np.ndarray  # item id → catalog column (−1 where no item)
    histories: HistoryIndex | None
    device: torch.device

    @classmethod
    def build(
        cls,
        model: R2ecModel,
        user_prompts: Sequence[str],
        target_ids: Sequence[int],
        item_prompt: dict[int, str],
        histories: Sequence[Sequence[int]] | None,
        share_prefix: Sequence[str] = ("users", "items"),
    ) -> SFTData:
        """``share_prefix``: which tables run their common prefix once (KV cache repeated) rather than in every row."""
        ids = np.array(sorted(item_prompt), dtype=np.int64)
        column_of = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
        column_of[ids] = np.arange(len(ids))
        return cls(
            TokenTable.of(model, model.user_texts(user_prompts), "users" in share_prefix),
            np.asarray(target_ids, dtype=np.int64),
            TokenTable.of(model, [item_prompt[int(i)] for i in ids], "items" in share_prefix),
            ids,
            column_of,
            None if histories is None else HistoryIndex.of(histories, torch.as_tensor(column_of, device=model.device)),
            model.device,
        )

    def target_columns(self, rows: np.ndarray) -> torch.Tensor:
        """Catalog columns of the targets of samples ``rows``, on the device."""
        return torch.as_tensor(self.column_of[self.target_ids[rows]], device=self.device)


def catalog_item_backward(
    model: R2ecModel,
    data: SFTData,
    chunk_size: int | None,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    groups: int,
) -> torch.Tensor:
    """Backpropagate ``loss_of(every catalog item's state)`` through the items (and whatever else it reads).

    Without ``chunk_size`` every item is encoded in one graph, in ``groups`` passes of similar lengths
    (``encode_catalog``). With it the gradient-cache trick: the
    items are encoded without a graph, the loss's gradient with respect to their states is taken,
    and each chunk is encoded again with a graph and given its rows of it (the same gradient, one
    chunk's activations at a time, for one more forward pass of the items). Returns the loss (detached).
    """
    if chunk_size is None or chunk_size >= len(data.item_ids):
        loss = loss_of(encode_catalog(model, data.items, groups).float())
        loss.backward()
        return loss.detach()
    order = np.argsort(data.items.lengths, kind="stable")  # similar lengths share a chunk
    chunks = [order[start : start + chunk_size] for start in range(0, len(order), chunk_size)]
    with torch.no_grad():
        states = torch.empty(len(order), model.lm.config.hidden_size, device=model.device)
        for chunk in chunks:
            states[torch.as_tensor(chunk, device=model.device)] = encode_rows(model, data.items, chunk).float()
    states.requires_grad_(True)
    loss = loss_of(states)
    loss.backward()
    for chunk in chunks:
        rows = torch.as_tensor(chunk, device=model.device)
        encode_rows(model, data.items, chunk).float().backward(states.grad[rows])
    return loss.detach()


def batched_loss_backward(
    model: R2ecModel, data: SFTData, rows: np.ndarray, settings: SFTParams, negatives: np.ndarray | None = None
) -> torch.Tensor:
    """One step's loss for samples ``rows``, its gradient accumulated into the trainable weights.

    ``softmax: full``: each target against every catalog item (earlier items masked); ``sampled``: against
    the batch's targets and ``negatives`` (item ids), duplicates masked, as the CPU engine.
    """
    tau = model.config.similarity_temperature
    users = encode_rows(model, data.users, rows)
    if settings.softmax == "full":
        excluded = None if data.histories is None else data.histories.mask(np.asarray(rows), len(data.item_ids))
        columns = data.target_columns(rows)
        return catalog_item_backward(
            model,
            data,
            settings.item_chunk_size,
            lambda items: full_catalog_infonce(users, items, columns, tau, excluded),
            settings.catalog_groups,
        )
    if settings.softmax != "sampled":
        raise ValueError(f"the batched SFT engine trains softmax 'full' or 'sampled', not {settings.softmax!r}")
    column_ids = np.concatenate(
        [data.target_ids[rows], np.asarray([] if negatives is None else negatives, dtype=np.int64)]
    )
    items = encode_rows(model, data.items, data.column_of[column_ids])
    ids = torch.as_tensor(column_ids, device=model.device)
    loss = in_batch_infonce(users, items, ids[: len(rows)], tau, ids)
    loss.backward()
    return loss.detach()


def refuse_checkpointed_prefixes(checkpointing: bool, share_prefix: Sequence[str]) -> None:
    """The batched engine runs a shared prefix once and repeats its KV cache; under gradient checkpointing HF
    drops every cache passed to a layer, so the two settings cannot go together."""
    if checkpointing and share_prefix:
        raise ValueError(
            f"model.gradient_checkpointing: true cannot run with sft.share_prefix: {list(share_prefix)} (engine "
            "batched): HF drops the shared prefix's KV cache under checkpointing. Set sft.share_prefix: [] "
            "(every text run whole) or model.gradient_checkpointing: false."
        )


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timings), a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
