"""Batched reasoning generation with a KV cache that stops each row at the answer tag (method §3, §5.1).

A row stops when its decoded text contains the answer tag, when it closes its turn (EOS or the chat
template's end-of-turn token, which is dropped), or at ``max_new_tokens``. Whatever stopped it, the
path then ends with exactly the tag's canonical token ids: a tag written in another token split or
half-written at the cap is cut, together with whitespace before it, and the canonical ids are
teacher-forced (re-feeding the last kept token when already-fed tokens were cut, so the forced
tokens' log-probabilities and the final state see only the kept context). Reasoning-mode h, direct
mode and the item rows are thus read at the same token. The result carries the
generated tokens, one log-probability per token (under the sampling temperature, before top-k
truncation, as RecPO's importance ratios need) and the last-layer hidden state at the tag's last
token. That hidden state is the user state h, so no second forward pass over the whole sequence is
needed. With ``group`` > 1 each prompt is run once and its KV cache repeated for its ``group`` paths
(RecPO's G samples per user), so the long prompt is not paid for G times. With ``direct=True`` the
no-reasoning user state (prompt + answer tag) is read off the same prompt cache before generating,
so evaluating both modes costs one prompt pass, not two. Each step transfers to the host once: the
sampled tokens and, from a vocabulary mask on the device, which of them may stop their path; only
those rows go through the text rule, and a step where no row stops sends nothing back.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from transformers import Cache, PreTrainedTokenizerBase

from r2ec_pipeline.model.dual_head import R2ecModel, common_prefix_length, position_ids
from r2ec_pipeline.model.hf_compat import cache_of, with_cache

StopReason = Literal["tag", "end_of_turn", "length"]
STOP_REASONS: tuple[StopReason, ...] = ("tag", "end_of_turn", "length")
MIN_SHARED_PREFIX = 8  # tokens: a shorter common prefix is not worth a pass of its own

# Chat templates' end-of-turn markers, counted as end of turn whenever the tokenizer has them as tokens.
END_OF_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


@dataclass
class Generation:
    """One reasoning path per prompt."""

    token_ids: list[list[int]]  # generated tokens, ending with the answer tag's canonical ids
    logprobs: list[torch.Tensor]  # one log-probability per generated token
    texts: list[str]  # decoded generated text, ending with the answer tag
    stop_reasons: list[StopReason]  # what ended each path: the tag, end of turn, or the length cap
    final_hidden: torch.Tensor  # B×d hidden state at the tag's last token (the user state h)
    direct_hidden: torch.Tensor | None = None  # B×d state of prompt + tag, no reasoning (``direct=True``)
    decode_steps: int = 0  # forward passes of one token per row (the batch's longest path, cuts included)


Generators = torch.Generator | Sequence[torch.Generator] | None


def end_of_turn_ids(model: R2ecModel) -> set[int]:
    """Token ids that close the assistant's turn: EOS, the generation config's EOS ids, template markers."""
    tokenizer = model.tokenizer
    configured = getattr(getattr(model.lm, "generation_config", None), "eos_token_id", None)
    ids = {tokenizer.eos_token_id, *(configured if isinstance(configured, list | tuple) else [configured])}
    specials = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    ids.update(tokenizer.convert_tokens_to_ids(marker) for marker in END_OF_TURN_MARKERS if marker in specials)
    return {int(i) for i in ids if i is not None}


@functools.lru_cache(maxsize=8)
def stop_candidates(
    tokenizer: PreTrainedTokenizerBase, tag: str, vocab_size: int, end_of_turn: frozenset[int]
) -> torch.Tensor:
    """Vocabulary mask of the tokens that may stop a path: end of turn, or text holding the tag's last character.

    A tag becomes part of the text only with the token that writes its last character, so every
    other token continues the path without a text check. Ids beyond the tokenizer's vocabulary
    (padded embedding rows) count as candidates; the exact rule (``_StopRule``) decides for these.
    """
    known = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(known)))
    texts = tokenizer.batch_decode([[i] for i in range(known)])
    mask = torch.ones(max(vocab_size, known), dtype=torch.bool)
    mask[:known] = torch.tensor(
        [tag[-1] in (piece or "") or tag[-1] in text for piece, text in zip(pieces, texts, strict=True)]
    )
    mask[[i for i in end_of_turn if i < len(mask)]] = True
    return mask


def partial_tag_length(text: str, tag: str) -> int:
    """Length of the longest proper prefix of ``tag`` that ``text`` ends with (a half-written tag)."""
    return next((size for size in range(len(tag) - 1, 0, -1) if text.endswith(tag[:size])), 0)


def closing_ids(
    tokenizer: PreTrainedTokenizerBase, tokens: Sequence[int], end: int, tag_ids: Sequence[int]
) -> list[int]:
    """The canonical token sequence of a path whose reasoning is the decoded ``tokens`` cut at character ``end``.

    Reasoning = decode(tokens)[:end] without trailing whitespace. The sampled tokens are kept as long
    as their text stays inside it; what is left of it (a token that straddled the cut) is tokenized
    again, and the tag's canonical ids follow. So a tag spelled in another split (``" <"``,
    ``">\n"``, ``"<answ<answer>"``) ends exactly like the item prompts and direct mode end.
    """
    reasoning = tokenizer.decode(list(tokens))[:end].rstrip()
    kept, prefix = len(tokens), None
    while kept > 0:
        prefix = tokenizer.decode(list(tokens[:kept]))
        if reasoning.startswith(prefix):
            break
        kept -= 1
    rest = reasoning[len(prefix) if kept else 0 :]
    rest_ids = tokenizer(rest, add_special_tokens=False)["input_ids"] if rest else []
    return [*tokens[:kept], *rest_ids, *tag_ids]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _next_tokens(logits: torch.Tensor, do_sample: bool, top_k: int | None, generator: Generators) -> torch.Tensor:
    """Greedy or top-k sampling; a list of generators draws each row from its own stream."""
    if not do_sample:
        return logits.argmax(dim=-1)
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if generator is None or isinstance(generator, torch.Generator):
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    if len(generator) != len(probs):
        raise ValueError(f"{len(generator)} generators for {len(probs)} rows")
    return torch.cat([torch.multinomial(row, 1, generator=g) for row, g in zip(probs, generator, strict=True)])


def _prompt_pass(
    model: R2ecModel, prompts: Sequence[str], share_prefix: bool
) -> tuple[Cache, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The prompts through the model with a KV cache: (cache, next-token logits, attention mask, each row's
    last prompt token); every row's last column is its last prompt token.

    With ``share_prefix`` and a token prefix common to the batch of at least ``MIN_SHARED_PREFIX`` tokens
    (the system turn and instruction every user prompt starts with), the prefix is run once and its cache
    repeated for the batch; each prompt's own tokens, left-padded, run on top. The pads then sit between
    the prefix and the prompt's own part, masked out, and position ids skip them as they skip left pads.
    """
    token_lists = model.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    shareable = share_prefix and len(token_lists) > 1 and not model.recomputes_activations  # HF drops caches then
    common = common_prefix_length(token_lists) if shareable else 0
    if common < MIN_SHARED_PREFIX:
        common, cache = 0, None  # every prompt run whole, left-padded
    else:
        cache = model.run_prefix(token_lists[0][:common]).for_batch(len(token_lists))
    own = [ids[common:] for ids in token_lists]
    width, pad = max(len(ids) for ids in own), model.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(row)) + row for row in own], device=model.device)
    own_mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in own], device=model.device)
    mask = torch.cat([torch.ones(len(own), common, dtype=own_mask.dtype, device=model.device), own_mask], dim=1)
    out = model.lm(
        input_ids=ids,
        attention_mask=mask,
        position_ids=position_ids(mask)[:, common:],
        **with_cache(cache),
        use_cache=True,
        logits_to_keep=1,
    )
    return cache_of(out), out.logits[:, -1], mask, ids[:, -1]


def _direct_states(
    model: R2ecModel, cache, mask: torch.Tensor, next_position: torch.Tensor, tag_ids: list[int]
) -> torch.Tensor:
    """h after prompt + answer tag, run on the prompt's cache; the tag is cropped off the cache again."""
    rows, width = mask.shape[0], len(tag_ids)
    tag = torch.tensor(tag_ids, device=mask.device).expand(rows, -1)
    out = model.decoder(
        input_ids=tag,
        attention_mask=torch.cat([mask, torch.ones_like(tag)], dim=1),
        position_ids=next_position.unsqueeze(1) + torch.arange(width, device=mask.device),
        **with_cache(cache),
        use_cache=True,
    )
    cache.crop(-width)
    return out.last_hidden_state[:, -1].float()


@dataclass(frozen=True)
class _StopRule:
    """When a path stops, and the canonical tokens it must end with (method §3)."""

    tokenizer: PreTrainedTokenizerBase
    tag_ids: list[int]
    tag: str
    max_new_tokens: int
    end_of_turn: set[int]

    def ending(self, tokens: list[int], token: int) -> tuple[StopReason, list[int]] | None:
        """None if the path goes on with ``token``; else why it stops and the whole path it must become."""
        if token in self.end_of_turn:  # the turn is closed: the marker is dropped, the tag goes right there
            text = self.tokenizer.decode(tokens)
            return "end_of_turn", closing_ids(
                self.tokenizer, tokens, len(text) - partial_tag_length(text, self.tag), self.tag_ids
            )
        candidate = [*tokens, token]
        tail = self.tokenizer.decode(candidate[-(len(self.tag) + 1) :])  # a tag spelled one character a token too
        if self.tag in tail:
            text = self.tokenizer.decode(candidate)
            return "tag", closing_ids(self.tokenizer, candidate, text.index(self.tag), self.tag_ids)
        if len(candidate) >= self.max_new_tokens:
            text = self.tokenizer.decode(candidate)
            return "length", closing_ids(
                self.tokenizer, candidate, len(text) - partial_tag_length(text, self.tag), self.tag_ids
            )
        return None


@dataclass
class _Path:
    """One row's generation state: its tokens, their KV-cache columns, and what it still must be fed."""

    position: int  # position id of the next token fed
    context_token: int  # the last token before the generated ones (re-fed when a stop cuts them all)
    context_column: int  # its column in the attention mask
    tokens: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)  # the step each token was fed at (its log-prob's row)
    columns: list[int] = field(default_factory=list)  # mask column of each generated token
    forced: list[int] = field(default_factory=list)  # tokens still to feed before the path ends
    stop_reason: StopReason | None = None
    finished: bool = False

    def feed(self, token: int, step: int, column: int) -> tuple[int, int, bool]:
        """Feed ``token`` at ``step`` (no stop check: callers know it cannot stop the path)."""
        self.tokens.append(token)
        self.steps.append(step)
        self.columns.append(column)
        self.position += 1
        return token, self.position - 1, self.stop_reason is not None and not self.forced

    def _rewind(self, keep: int, column: int, mask: torch.Tensor) -> tuple[int, int, bool]:
        """Drop the fed tokens after ``keep`` from the context and re-feed the last kept one.

        Its output then gives the next-token distribution after the kept tokens, under which the
        forced tokens' log-probabilities are read. Dropped tokens stay in the cache, masked out.
        """
        dropped = self.columns[keep:] + ([self.columns[keep - 1]] if keep else [self.context_column])
        mask[dropped] = 0
        del self.tokens[keep:], self.steps[keep:], self.columns[keep:]
        token = self.tokens[-1] if keep else self.context_token
        if keep:
            self.columns[-1] = column
        else:
            self.context_column = column
        self.position -= len(dropped)
        self.position += 1
        return token, self.position - 1, False

    def advance(
        self, sampled: int, step: int, column: int, stops: _StopRule, mask: torch.Tensor
    ) -> tuple[int, int, bool]:
        """This step's (input token, its position, whether the path ends with it); ``mask`` is the row's."""
        if self.stop_reason is not None:
            return self.feed(self.forced.pop(0), step, column)
        ending = stops.ending(self.tokens, sampled)
        if ending is None:
            return self.feed(sampled, step, column)
        self.stop_reason, closing = ending
        candidate = [*self.tokens, sampled]
        keep = _common_prefix(candidate, closing)
        self.forced = closing[keep:]
        if keep == len(candidate):
            return self.feed(sampled, step, column)
        if keep == len(self.tokens):  # only the sampled token goes: the forced one takes its place
            return self.feed(self.forced.pop(0), step, column)
        return self._rewind(keep, column, mask)


@torch.no_grad()
def generate_reasoning(
    model: R2ecModel,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: Generators = None,
    group: int = 1,
    direct: bool = False,
    share_prefix: bool = True,
    logprobs: bool = True,
) -> Generation:
    """Generate ``group`` reasoning paths per prompt (rows prompt-major), each ending with the answer tag.

    ``generator`` is one stream for the batch, or one per output row: per-row streams make a row's
    sample independent of the batch it is in (same rollout on 1 or N processes). ``share_prefix``: the
    token prefix every prompt starts with (system turn and instruction) is run once (``_prompt_pass``).
    ``logprobs=False`` skips the per-token log-probabilities (greedy evaluation needs none; they come back empty).
    Decoding speed is the model's: pass a ``merged.MergedCopy``'s model to decode without unmerged adapters.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    tokenizer, tag = model.tokenizer, model.config.answer_tag
    tag_ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
    cache, logits, mask, last_prompt_tokens = _prompt_pass(model, prompts, share_prefix)
    logits = logits.float() / temperature
    next_position = position_ids(mask)[:, -1] + 1
    direct_hidden = None
    if direct:
        if not cache.is_croppable:
            raise ValueError(f"{type(model.lm).__name__}'s cache cannot be cropped: encode the direct mode apart")
        direct_hidden = _direct_states(model, cache, mask, next_position, tag_ids)
    if group > 1:
        cache.batch_repeat_interleave(group)
        logits, mask, next_position = (t.repeat_interleave(group, dim=0) for t in (logits, mask, next_position))

    size = len(prompts) * group
    stops = _StopRule(tokenizer, tag_ids, tag, max_new_tokens, end_of_turn_ids(model))
    may_stop = stop_candidates(tokenizer, tag, logits.shape[-1], frozenset(stops.end_of_turn)).to(model.device)
    paths = [
        _Path(position=int(p), context_token=t, context_column=mask.shape[1] - 1)
        for p, t in zip(next_position.tolist(), last_prompt_tokens.repeat_interleave(group).tolist(), strict=True)
    ]
    final_hidden = torch.zeros(size, model.lm.config.hidden_size, device=model.device)
    pad = tokenizer.pad_token_id
    live = torch.ones(size, dtype=torch.bool, device=model.device)
    head = model.lm.get_output_embeddings()
    feed_positions = next_position.clone()  # position id of the token each row is fed this step
    step_logprobs: list[torch.Tensor] = []  # per step: the log-prob of the token each row was fed
    steps_run = 0
    # the attention mask grows by a column a step: preallocated (a rewind re-feeds a token, so keep a margin)
    mask = _grown(mask, max_new_tokens + 2 * len(tag_ids) + 8)
    width = mask.shape[1] - (max_new_tokens + 2 * len(tag_ids) + 8)

    for step in itertools.count():
        if all(path.finished for path in paths):
            break
        sampled = _next_tokens(logits, do_sample, top_k, generator)
        tokens = torch.where(live, sampled, pad)
        # the step's one host transfer: the sampled tokens and which may stop their path (a device lookup)
        sampled_list, flagged = torch.stack([sampled, may_stop[sampled].long()]).tolist()
        if width == mask.shape[1]:  # past the margin (many rewinds): grow again
            mask = _grown(mask, max_new_tokens)
        column, slow = width, False
        inputs: list[tuple[int, int, bool]] = [(pad, 0, False)] * size  # (token, position, ends here)
        for row, path in enumerate(paths):
            if path.finished:
                continue
            if flagged[row] or path.stop_reason is not None or len(path.tokens) + 1 >= max_new_tokens:
                inputs[row], slow = path.advance(sampled_list[row], step, column, stops, mask[row]), True
            else:  # the common case: the token cannot stop the path, so no text check and nothing to send back
                inputs[row] = path.feed(sampled_list[row], step, column)
        if slow:  # a stop, a forced token or a rewind: this step's inputs come from the host
            tokens, feed_positions = (
                torch.tensor(values, device=model.device) for values in list(zip(*inputs, strict=True))[:2]
            )
        if logprobs:
            step_logprobs.append(F.log_softmax(logits, dim=-1).gather(1, tokens.view(-1, 1)).squeeze(1))
        steps_run += 1
        mask[:, width] = live
        width += 1
        out = model.decoder(  # the body, then lm_head on its one new position: no per-layer states kept
            input_ids=tokens.unsqueeze(1),
            attention_mask=mask[:, :width],
            position_ids=feed_positions.unsqueeze(1),
            **with_cache(cache),
            use_cache=True,
        )
        hidden = out.last_hidden_state[:, -1]
        cache, logits = cache_of(out), head(hidden)
        logits = logits.float() / temperature if (do_sample or logprobs) else logits  # greedy: argmax as it is
        feed_positions = feed_positions + 1
        ended = [row for row, (_, _, ends) in enumerate(inputs) if ends]
        if ended:
            final_hidden[ended] = hidden[ended].float()
            live[ended] = False
            for row in ended:
                paths[row].finished = True

    fed = torch.stack(step_logprobs, dim=1) if step_logprobs else torch.zeros(size, 0, device=model.device)
    return Generation(
        token_ids=[path.tokens for path in paths],
        logprobs=[fed[row, path.steps] if logprobs else fed[row] for row, path in enumerate(paths)],
        texts=[tokenizer.decode(path.tokens) for path in paths],
        stop_reasons=[path.stop_reason for path in paths],
        final_hidden=final_hidden,
        direct_hidden=direct_hidden,
        decode_steps=steps_run,
    )


def _grown(mask: torch.Tensor, columns: int) -> torch.Tensor:
    """``mask`` with ``columns`` zero columns appended (filled one a step as the rows are fed)."""
    return torch.cat([mask, mask.new_zeros(mask.shape[0], columns)], dim=1)
