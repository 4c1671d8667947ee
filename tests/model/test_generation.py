"""Reasoning generation on the tiny backbone: stops (tag, end of turn, cap), the canonical tag ending, log-probs."""

import contextlib

import pytest
import torch
import torch.nn.functional as F

from r2ec_pipeline.model.generation import (
    closing_ids,
    end_of_turn_ids,
    generate_reasoning,
    partial_tag_length,
)
from tests.model.conftest import PROMPTS

TAG = "<answer>"


class ScriptedHead(torch.nn.Module):
    """The tiny LM's head with its logits pushed towards a fixed script, one token per call (one call a step)."""

    def __init__(self, inner, script):
        super().__init__()
        self.inner, self.script, self.calls = inner, script, 0

    def forward(self, hidden):
        logits = self.inner(hidden)
        if self.calls < len(self.script):  # one token for every row, or a list with one per row
            tokens = torch.as_tensor(self.script[self.calls]).view(-1).expand(logits.shape[0])
            last = logits[:, -1] if logits.dim() == 3 else logits
            last[torch.arange(len(tokens)), tokens] += 1e4
        self.calls += 1
        return logits


@contextlib.contextmanager
def scripted(model, script):
    """Generate under ``script``; the model's own head is back in place afterwards."""
    base = model.lm.get_base_model()
    inner = base.lm_head
    base.lm_head = ScriptedHead(inner, script)
    try:
        yield
    finally:
        base.lm_head = inner


def _ids(model, text):
    return model.tokenizer(text, add_special_tokens=False)["input_ids"]


def _teacher_forced(lm, prompt_ids, tokens):
    """Log-probs of ``tokens`` and the last hidden state after prompt + tokens, in one plain forward."""
    ids = torch.tensor([prompt_ids + tokens])
    out = lm(input_ids=ids, output_hidden_states=True)
    logits = out.logits[0, -len(tokens) - 1 : -1].float()
    logprobs = F.log_softmax(logits, dim=-1).gather(1, torch.tensor(tokens).view(-1, 1)).squeeze(1)
    return logprobs, out.hidden_states[-1][0, -1]


def test_sampled_paths_end_with_the_canonical_tag_and_logprobs_match_teacher_forcing(model):
    result = generate_reasoning(
        model,
        PROMPTS,
        max_new_tokens=12,
        do_sample=True,
        temperature=1.5,
        top_k=50,
        generator=torch.Generator().manual_seed(0),
    )
    tag_ids = _ids(model, TAG)
    for row, prompt in enumerate(PROMPTS):
        tokens = result.token_ids[row]
        assert tokens[-len(tag_ids) :] == tag_ids and result.texts[row].endswith(TAG)
        assert result.texts[row].count(TAG) == 1 and len(result.logprobs[row]) == len(tokens)
        ids = torch.tensor([model.tokenize([prompt])["input_ids"][0].tolist() + tokens])
        logits = model.lm(input_ids=ids).logits[0, -len(tokens) - 1 : -1].float() / 1.5
        expected = F.log_softmax(logits, dim=-1).gather(1, torch.tensor(tokens).view(-1, 1)).squeeze(1)
        torch.testing.assert_close(result.logprobs[row], expected, atol=1e-4, rtol=1e-4)
        # the final hidden state is the user state of prompt + reasoning: no second forward needed
        hidden = model.lm(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]
        torch.testing.assert_close(result.final_hidden[row], hidden, atol=1e-4, rtol=1e-3)


def test_grouped_generation_equals_repeated_prompts_and_rows_ignore_their_batch(model):
    def streams(seeds):
        return [torch.Generator().manual_seed(seed) for seed in seeds]

    kwargs = dict(max_new_tokens=6, do_sample=True, temperature=1.5, top_k=50)
    grouped = generate_reasoning(model, PROMPTS, group=2, generator=streams([1, 2, 3, 4]), **kwargs)
    repeated = generate_reasoning(
        model, [p for p in PROMPTS for _ in range(2)], generator=streams([1, 2, 3, 4]), **kwargs
    )
    alone = generate_reasoning(model, PROMPTS[1:], group=2, generator=streams([3, 4]), **kwargs)
    assert grouped.token_ids == repeated.token_ids and grouped.token_ids[2:] == alone.token_ids
    for got, expected in zip(grouped.logprobs[2:], alone.logprobs, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grouped.final_hidden, repeated.final_hidden, atol=1e-4, rtol=1e-3)


def _scripted_run(model, script, max_new_tokens=50):
    """Generate greedily from PROMPTS[0] under ``script``."""
    with scripted(model, script):
        return generate_reasoning(model, PROMPTS[:1], max_new_tokens=max_new_tokens)


# (how the reasoning is written, why it stops, whether already-fed tokens are cut): every case ends
# with "step by step" + the canonical tag ids, so its h must equal the canonical encoding of
# "step by step<answer>". Scripts end at the stop, so what follows is the model's own.
STOP_CASES = {
    "canonical tag": (lambda m: _ids(m, "step by step") + _ids(m, TAG), "tag", False),
    "space-prefixed tag": (lambda m: _ids(m, "step by step") + _ids(m, " " + TAG), "tag", True),
    "tag in another split": (
        lambda m: _ids(m, "step by step") + _ids(m, "<") + _ids(m, "ans") + _ids(m, "wer>"),
        "tag",
        True,
    ),
    "end of turn": (lambda m: _ids(m, "step by step") + [m.tokenizer.eos_token_id], "end_of_turn", False),
    "end of turn after a space": (lambda m: _ids(m, "step by step ") + [m.tokenizer.eos_token_id], "end_of_turn", True),
    "end of turn after half a tag": (
        lambda m: _ids(m, "step by step<answ") + [m.tokenizer.eos_token_id],
        "end_of_turn",
        True,
    ),
}


@pytest.mark.parametrize("case", list(STOP_CASES))
def test_every_stop_ends_with_the_canonical_tag_and_reads_h_there(model, case):
    script, reason, cuts_fed_tokens = STOP_CASES[case]
    result = _scripted_run(model, script(model))
    expected = _ids(model, "step by step") + _ids(model, TAG)
    assert result.token_ids[0] == expected and result.stop_reasons == [reason]
    assert result.texts[0] == "step by step" + TAG
    canonical = model.encode([PROMPTS[0] + "step by step" + TAG])[0]
    torch.testing.assert_close(result.final_hidden[0], canonical, atol=1e-4, rtol=1e-3)
    if cuts_fed_tokens:  # the forced tokens' log-probs see only the kept context (cut tokens are masked out)
        logprobs, _ = _teacher_forced(model.lm, model.tokenize(PROMPTS[:1])["input_ids"][0].tolist(), expected)
        torch.testing.assert_close(result.logprobs[0][-2:], logprobs[-2:], atol=1e-4, rtol=1e-4)


def test_the_length_cap_appends_the_canonical_tag(model):
    script = _ids(model, "step by step and more")  # "ste", "p", " ", "b", "y", ...
    result = _scripted_run(model, script, max_new_tokens=5)
    assert result.stop_reasons == ["length"]
    assert result.token_ids[0] == script[:5] + _ids(model, TAG) and result.texts[0] == "step by" + TAG


def test_a_tag_half_written_at_the_cap_is_replaced_not_appended_to(model):
    script = _ids(model, "step<answ")  # "ste", "p", "<", "answ": the cap falls inside the tag
    result = _scripted_run(model, script, max_new_tokens=len(script))
    assert result.texts[0] == "step" + TAG and result.token_ids[0] == _ids(model, "step") + _ids(model, TAG)
    canonical = model.encode([PROMPTS[0] + "step" + TAG])[0]
    torch.testing.assert_close(result.final_hidden[0], canonical, atol=1e-4, rtol=1e-3)


def test_rows_stopping_differently_in_one_batch_keep_their_own_context(model):
    """A row cut and rewound mid-batch must not disturb the rows sharing its batch and cache."""
    endings = ["step by step <answer>", "step<answer>"]  # row 0 is cut and rewound; row 1 stops early as written
    scripts = [_ids(model, text) for text in endings]
    width = max(len(script) for script in scripts)
    with scripted(model, [[s[i] if i < len(s) else s[-1] for s in scripts] for i in range(width)]):
        result = generate_reasoning(model, PROMPTS, max_new_tokens=50)
    assert result.texts == ["step by step" + TAG, "step" + TAG] and result.stop_reasons == ["tag", "tag"]
    canonical = model.encode([PROMPTS[0] + "step by step" + TAG, PROMPTS[1] + "step" + TAG])
    torch.testing.assert_close(result.final_hidden, canonical, atol=1e-4, rtol=1e-3)


def test_end_of_turn_ids_include_the_template_marker_and_eos(model):
    assert model.tokenizer.convert_tokens_to_ids("<|im_end|>") in end_of_turn_ids(model)
    assert model.tokenizer.eos_token_id in end_of_turn_ids(model)


def test_closing_ids_keep_sampled_tokens_up_to_the_cut_and_retokenize_a_straddling_one(model):
    tokenizer, tag_ids = model.tokenizer, _ids(model, TAG)
    tokens = _ids(model, "step by step") + _ids(model, " <")  # " <" straddles the cut after the space
    text = tokenizer.decode(tokens)
    assert closing_ids(tokenizer, tokens, len(text) - 1, tag_ids) == _ids(model, "step by step") + tag_ids
    assert partial_tag_length("step<answ", TAG) == 5 and partial_tag_length("a < b", TAG) == 0
    assert partial_tag_length("x<", TAG) == 1 and partial_tag_length(TAG, TAG) == 0


def test_direct_state_read_off_the_prompt_cache_equals_encoding_prompt_plus_tag(model):
    with torch.no_grad():  # non-zero adapters, so the adapter path is part of the comparison
        for name, parameter in model.lm.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    plain = generate_reasoning(model, PROMPTS, max_new_tokens=5)
    both = generate_reasoning(model, PROMPTS, max_new_tokens=5, direct=True)
    expected = model.encode(model.user_texts(PROMPTS))
    torch.testing.assert_close(both.direct_hidden, expected, atol=1e-4, rtol=1e-3)
    assert both.token_ids == plain.token_ids  # the tag was cropped off the cache before generating
    torch.testing.assert_close(both.final_hidden, plain.final_hidden, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("do_sample", [False, True])
def test_the_device_stop_filter_gives_the_tokens_of_checking_every_row_every_step(model, monkeypatch, do_sample):
    """Only tokens the vocabulary mask flags go through the text rule; flagging every token is the
    per-row loop this replaced (every row decoded and checked each step, inputs sent from the host)."""
    import r2ec_pipeline.model.generation as generation

    prompts = PROMPTS * 3
    kwargs = dict(max_new_tokens=24, do_sample=do_sample, temperature=1.5, top_k=80, group=2)
    with torch.no_grad():  # a less uniform model, so that greedy paths differ between prompts
        for name, parameter in model.lm.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    fast = generate_reasoning(model, prompts, generator=torch.Generator().manual_seed(1), **kwargs)
    candidates = generation.stop_candidates(
        model.tokenizer, TAG, model.lm.config.vocab_size, frozenset(end_of_turn_ids(model))
    )
    assert 0 < int(candidates.sum()) < len(candidates) // 2  # the filter lets most tokens through unchecked
    monkeypatch.setattr(generation, "stop_candidates", lambda *args: torch.ones_like(candidates))
    every = generate_reasoning(model, prompts, generator=torch.Generator().manual_seed(1), **kwargs)
    assert fast.token_ids == every.token_ids and fast.stop_reasons == every.stop_reasons
    for got, expected in zip(fast.logprobs, every.logprobs, strict=True):
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(fast.final_hidden, every.final_hidden)
    assert len({tuple(t) for t in fast.token_ids}) > 1


def test_a_prompt_prefix_shared_by_the_batch_is_run_once_with_the_same_paths_and_states(model, monkeypatch):
    instruction = (
        "<|im_start|>system\nYou recommend films.<|im_end|>\n<|im_start|>user\nHere is a user's "
        "history of rated items, oldest first. Analyse it step by step.\n"
    )
    prompts = [
        instruction + history + "<|im_end|>\n<|im_start|>assistant\n"
        for history in ("Toy Story (1995), 5", "Heat (1995), 4\nFargo (1996), 2\nAlien (1979), 5", "Up")
    ]
    with torch.no_grad():
        for name, parameter in model.lm.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    runs = []
    run_prefix = model.run_prefix
    monkeypatch.setattr(model, "run_prefix", lambda ids: runs.append(len(ids)) or run_prefix(ids))

    shared = generate_reasoning(model, prompts, max_new_tokens=8, group=2, direct=True)
    assert len(runs) == 1 and runs[0] >= 20  # the system turn and instruction, once for the batch
    plain = generate_reasoning(model, prompts, max_new_tokens=8, group=2, direct=True, share_prefix=False)
    assert len(runs) == 1
    assert shared.token_ids == plain.token_ids and shared.stop_reasons == plain.stop_reasons
    torch.testing.assert_close(shared.final_hidden, plain.final_hidden, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(shared.direct_hidden, plain.direct_hidden, atol=1e-4, rtol=1e-4)
    for a, b in zip(shared.logprobs, plain.logprobs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
