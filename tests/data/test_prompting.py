"""Prompt rendering: format, chat template, and the token caps."""

import pandas as pd
import pytest

from r2ec_pipeline.data.prompting import (
    PromptError,
    count_tokens,
    fit_item_prompt,
    fit_user_prompt,
    history_line,
    history_lines,
    item_fields_text,
    relative_time,
    render_item_prompt,
    render_user_prompt,
)

INSTRUCTION = "Recommend the next item inside <answer> and </answer>."


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0d 0.0h ago"), (3 * 86_400 + 4 * 3600, "3d 4.0h ago"), (5400, "0d 1.5h ago"), (86_399, "0d 24.0h ago")],
)
def test_relative_time(seconds, text):
    assert relative_time(seconds) == text


def test_history_line_has_time_title_in_brackets_and_rating():
    assert history_line(3 * 86_400 + 4 * 3600, "Toy Story", 4.0) == "- 3d 4.0h ago: [Toy Story] rating 4"


def test_user_prompt_is_a_user_turn_then_the_generation_prompt(tiny_tokenizer):
    text = render_user_prompt(tiny_tokenizer, INSTRUCTION, ["- a", "- b"])
    assert text == f"<|im_start|>user\n{INSTRUCTION}\n\n- a\n- b<|im_end|>\n<|im_start|>assistant\n"


def test_item_prompt_prefills_the_answer_tag_without_end_of_turn(tiny_tokenizer):
    text = render_item_prompt(tiny_tokenizer, "Summarise.", "Title: Babe", "<answer>")
    assert text.endswith("<|im_start|>assistant\n<answer>")
    assert "Title: Babe" in text


def test_item_fields_skip_ids_and_empty_values():
    item = pd.Series(
        {
            "item_id": 3,
            "raw_item_id": "B03",
            "title": "Tuner",
            "description": "",
            "average_rating": 4.5,
            "rating_number": 12.0,
        }
    )
    assert item_fields_text(item) == "Title: Tuner\nAverage rating: 4.5\nNumber of ratings: 12"


def test_user_prompt_under_the_cap_is_untouched(tiny_tokenizer):
    lines = [f"- {i}d 0.0h ago: [Item {i}] rating 3" for i in range(5, 0, -1)]
    text, n_tokens, kept = fit_user_prompt(tiny_tokenizer, INSTRUCTION, lines, max_tokens=10_000)
    assert kept == 5 and text == render_user_prompt(tiny_tokenizer, INSTRUCTION, lines)
    assert n_tokens == count_tokens(tiny_tokenizer, [text])[0]


def test_user_prompt_over_the_cap_drops_the_oldest_lines_first(tiny_tokenizer):
    lines = [f"- {i}d 0.0h ago: [Item {i}] rating 3" for i in range(8, 0, -1)]
    full = count_tokens(tiny_tokenizer, [render_user_prompt(tiny_tokenizer, INSTRUCTION, lines)])[0]
    three = count_tokens(tiny_tokenizer, [render_user_prompt(tiny_tokenizer, INSTRUCTION, lines[-3:])])[0]
    text, n_tokens, kept = fit_user_prompt(tiny_tokenizer, INSTRUCTION, lines, max_tokens=three)
    assert three < full and kept == 3 and n_tokens <= three
    assert INSTRUCTION in text and "[Item 1]" in text and "[Item 4]" not in text


def test_user_prompt_that_cannot_fit_one_line_is_an_error(tiny_tokenizer):
    with pytest.raises(PromptError, match="max_user_prompt_tokens=5"):
        fit_user_prompt(tiny_tokenizer, INSTRUCTION, ["- 1d 0.0h ago: [A] rating 3"], max_tokens=5)


def test_item_prompt_over_the_cap_cuts_the_end_of_the_text(tiny_tokenizer):
    fields = "Title: Guitar\nDescription: " + "very bright tone " * 40
    untouched, full, cut = fit_item_prompt(tiny_tokenizer, "Summarise.", fields, "<answer>", 10_000)
    assert not cut
    text, n_tokens, cut = fit_item_prompt(tiny_tokenizer, "Summarise.", fields, "<answer>", full // 2)
    assert cut and n_tokens <= full // 2
    assert "Title: Guitar" in text and text.endswith("<answer>")


def test_tokenizer_without_chat_template_is_refused(tiny_tokenizer):
    bare = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    bare.chat_template = None
    with pytest.raises(PromptError, match="no chat template"):
        render_user_prompt(bare, INSTRUCTION, ["- a"])


TITLES = {1: "Toy Story", 2: "GoldenEye"}


def test_history_lines_oldest_first_with_relative_time():
    lines = history_lines([1, 2], [4.0, 5.0], [0, 86_400], 2 * 86_400, TITLES)
    assert lines == ["- 2d 0.0h ago: [Toy Story] rating 4", "- 1d 0.0h ago: [GoldenEye] rating 5"]


def test_empty_history_is_refused():
    with pytest.raises(PromptError, match="empty history"):
        history_lines([], [], [], 0, TITLES)


def test_unknown_history_item_is_named():
    with pytest.raises(PromptError, match=r"unknown item ids in history: \[99999\] \(catalog has 2 items, ids 1..2\)"):
        history_lines([1, 99999], [4.0, 3.0], [0, 1], 5, TITLES)
