"""User and item prompts rendered with the backbone's chat template (method §2).

- User prompt (user turn, then the assistant's generation prompt): the instruction, then one line per
  history item, oldest first: ``- 3d 4.0h ago: [Title] rating 4``.
- Item prompt: the instruction and the item's text fields in the user turn; the assistant turn is
  pre-filled with the answer tag (no end-of-turn after it). The rec head reads the hidden state of
  the last token of that tag.

Token counts use ``add_special_tokens=False``: the chat template already writes any BOS the model
needs, and the model stage tokenizes the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

FIELD_LABELS = {"average_rating": "Average rating", "rating_number": "Number of ratings"}
ID_COLUMNS = ("item_id", "raw_item_id")


class PromptError(ValueError):
    """A prompt cannot be rendered within its token cap, or the tokenizer cannot render chats."""


def relative_time(seconds: int) -> str:
    """Time before the target as ``<days>d <hours>h ago`` with hours to one decimal: ``3d 4.0h ago``."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    return f"{days}d {rest / 3600:.1f}h ago"


def history_line(seconds_before: int | None, title: str, rating: float | None) -> str:
    """One history line of the user prompt; an unknown time or rating is left out of the line."""
    when = f"{relative_time(seconds_before)}: " if seconds_before is not None else ""
    rated = f" rating {rating:g}" if rating is not None else ""
    return f"- {when}[{title}]{rated}"


def history_lines(
    item_ids: Sequence[int],
    ratings: Sequence[float] | None,
    timestamps: Sequence[int] | None,
    target_time: int | None,
    titles: dict[int, str],
) -> list[str]:
    """The history lines of a user prompt, oldest first; refuses an empty history or unknown items.

    Ratings and timestamps may be None (a served request need not know them): lines then omit them.
    """
    if len(item_ids) == 0:
        raise PromptError("empty history: a user needs at least one earlier interaction to get a prompt")
    ratings = [None] * len(item_ids) if ratings is None else ratings
    timestamps = [None] * len(item_ids) if timestamps is None or target_time is None else timestamps
    if not len(item_ids) == len(ratings) == len(timestamps):
        raise PromptError(
            f"history lengths differ: {len(item_ids)} items, {len(ratings)} ratings, {len(timestamps)} timestamps"
        )
    unknown = sorted({int(item) for item in item_ids if int(item) not in titles})
    if unknown:
        raise PromptError(
            f"unknown item ids in history: {unknown[:10]} (catalog has {len(titles)} items, "
            f"ids {min(titles)}..{max(titles)})"
        )
    return [
        history_line(
            None if stamp is None else target_time - int(stamp),
            titles[int(item)],
            None if rating is None else float(rating),
        )
        for item, rating, stamp in zip(item_ids, ratings, timestamps, strict=True)
    ]


def _chat(tokenizer: PreTrainedTokenizerBase, content: str) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise PromptError(f"tokenizer {type(tokenizer).__name__} has no chat template; use an instruct backbone")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )


def render_user_prompt(tokenizer: PreTrainedTokenizerBase, instruction: str, lines: Sequence[str]) -> str:
    """Chat-formatted user prompt ending with the assistant's generation prompt."""
    return _chat(tokenizer, instruction + "\n\n" + "\n".join(lines))


def count_tokens(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[int]:
    """Token count of each text as the model will see it."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def fit_user_prompt(
    tokenizer: PreTrainedTokenizerBase, instruction: str, lines: Sequence[str], max_tokens: int
) -> tuple[str, int, int]:
    """Drop the oldest history lines until the prompt fits ``max_tokens``; the instruction is never cut.

    Returns (prompt, token count, history lines kept). At least one history line must fit.
    """
    lo, hi = 1, len(lines)  # binary search on how many of the newest lines fit
    best: tuple[str, int, int] | None = None
    while lo <= hi:
        keep = (lo + hi) // 2
        text = render_user_prompt(tokenizer, instruction, lines[len(lines) - keep :])
        n_tokens = count_tokens(tokenizer, [text])[0]
        if n_tokens <= max_tokens:
            best, lo = (text, n_tokens, keep), keep + 1
        else:
            hi = keep - 1
    if best is None:
        raise PromptError(
            f"user prompt does not fit max_user_prompt_tokens={max_tokens} even with one history line; "
            "raise the cap or shorten the instruction"
        )
    return best


def item_fields_text(item: pd.Series) -> str:
    """``Title: …`` then one ``Label: value`` line per non-empty text field of the item."""
    lines = [f"Title: {item['title']}"]
    for column, value in item.items():
        if column in ID_COLUMNS or column == "title" or value is None or pd.isna(value) or str(value) == "":
            continue
        label = FIELD_LABELS.get(column, column.replace("_", " ").capitalize())
        lines.append(f"{label}: {value:g}" if isinstance(value, float) else f"{label}: {value}")
    return "\n".join(lines)


def render_item_prompt(tokenizer: PreTrainedTokenizerBase, instruction: str, fields: str, answer_tag: str) -> str:
    """Chat-formatted item prompt with the assistant turn pre-filled with ``answer_tag``."""
    return _chat(tokenizer, instruction + "\n\n" + fields) + answer_tag


def fit_item_prompt(
    tokenizer: PreTrainedTokenizerBase, instruction: str, fields: str, answer_tag: str, max_tokens: int
) -> tuple[str, int, bool]:
    """Cut the end of the item's text fields until the prompt fits ``max_tokens``.

    Returns (prompt, token count, whether the text was cut).
    """
    text = render_item_prompt(tokenizer, instruction, fields, answer_tag)
    n_tokens = count_tokens(tokenizer, [text])[0]
    if n_tokens <= max_tokens:
        return text, n_tokens, False
    field_ids = tokenizer(fields, add_special_tokens=False)["input_ids"]
    keep = len(field_ids) - (n_tokens - max_tokens) - 1
    while keep > 0:
        cut = tokenizer.decode(field_ids[:keep]).rstrip() + " …"
        text = render_item_prompt(tokenizer, instruction, cut, answer_tag)
        n_tokens = count_tokens(tokenizer, [text])[0]
        if n_tokens <= max_tokens:
            return text, n_tokens, True
        keep -= max(1, n_tokens - max_tokens)
    raise PromptError(f"item prompt does not fit max_item_prompt_tokens={max_tokens}: the instruction is too long")


def item_prompt_table(
    items: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, instruction: str, answer_tag: str, max_tokens: int
) -> pd.DataFrame:
    """One chat-formatted prompt per item (``item_id``, ``prompt``, ``prompt_tokens``, ``text_truncated``),
    pre-filled with the answer tag: the prompts stage's item prompts, and a catalog update's."""
    rows = []
    for _, item in tqdm(items.iterrows(), total=len(items), desc="item prompts", leave=False):
        prompt, n_tokens, cut = fit_item_prompt(tokenizer, instruction, item_fields_text(item), answer_tag, max_tokens)
        rows.append((int(item["item_id"]), prompt, n_tokens, cut))
    return pd.DataFrame.from_records(rows, columns=["item_id", "prompt", "prompt_tokens", "text_truncated"])
