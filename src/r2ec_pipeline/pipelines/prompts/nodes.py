"""Nodes of the prompts pipeline: samples → splits → chat-formatted user and item prompts + a summary."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from r2ec_pipeline.config import parse_block
from r2ec_pipeline.data.prompting import (
    count_tokens,
    fit_user_prompt,
    history_lines,
    item_prompt_table,
    render_user_prompt,
)
from r2ec_pipeline.data.samples import (
    SPLITS,
    assign_splits,
    build_samples,
    dataset_statistics,
    table5_line,
)

logger = logging.getLogger(__name__)
_COUNT_CHUNK = 2048


@contextmanager
def _parallel_tokenizers() -> Iterator[None]:
    """Let the Rust tokenizer use every core while this stage counts ~100k prompts (nothing else runs then);
    the Makefile turns it off elsewhere so it never competes with torch."""
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def make_samples(interactions: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Windowed samples of every user with their split label (``temporal`` or ``leave_one_out``)."""
    config = parse_block("prompts", params)
    samples = build_samples(interactions, config.window_size)
    samples["split"] = assign_splits(samples, config.split, config.temporal_ratios)
    logger.info("samples: %s", samples["split"].value_counts().to_dict())
    return samples


def render_user_prompts(
    samples: pd.DataFrame, items: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Add ``prompt``, ``prompt_tokens`` and ``history_in_prompt`` to each sample; one table per split."""
    config = parse_block("prompts", params)
    titles = dict(zip(items["item_id"].astype(int), items["title"], strict=True))
    lines = [
        history_lines(s.history_item_ids, s.history_ratings, s.history_timestamps, s.target_timestamp, titles)
        for s in samples.itertuples(index=False)
    ]
    prompts = [render_user_prompt(tokenizer, config.user_instruction, sample_lines) for sample_lines in lines]
    lengths: list[int] = []
    with _parallel_tokenizers():
        for start in tqdm(range(0, len(prompts), _COUNT_CHUNK), desc="tokenizing user prompts", leave=False):
            lengths.extend(count_tokens(tokenizer, prompts[start : start + _COUNT_CHUNK]))
    kept = [len(sample_lines) for sample_lines in lines]
    for index in np.flatnonzero(np.asarray(lengths) > config.max_user_prompt_tokens):
        prompts[index], lengths[index], kept[index] = fit_user_prompt(
            tokenizer, config.user_instruction, lines[index], config.max_user_prompt_tokens
        )
    rendered = samples.assign(prompt=prompts, prompt_tokens=lengths, history_in_prompt=kept)
    return tuple(rendered[rendered["split"] == split].reset_index(drop=True) for split in SPLITS)


def render_item_prompts(
    items: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, params: dict[str, Any]
) -> pd.DataFrame:
    """One chat-formatted prompt per catalog item, pre-filled with the answer tag."""
    config = parse_block("prompts", params)
    return item_prompt_table(
        items, tokenizer, config.item_instruction, config.answer_tag, config.max_item_prompt_tokens
    )


def _percentiles(values: pd.Series) -> dict[str, float]:
    if values.empty:
        return {}
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)} | {"max": float(values.max())}


def summarize_prompts(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    test: pd.DataFrame,
    item_prompts: pd.DataFrame,
    interactions: pd.DataFrame,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The dataset's statistics (the paper's Table 5), samples and users per split and prompt-length
    percentiles; also as MLflow metrics. The statistics are logged as the paper prints them."""
    splits = dict(zip(SPLITS, (train, valid, test), strict=True))
    statistics = dataset_statistics(interactions, len(item_prompts), {name: len(f) for name, f in splits.items()})
    logger.info("dataset (Table 5 form): %s", table5_line(statistics))
    summary: dict[str, Any] = {
        split: {
            "samples": len(frame),
            "users": int(frame["user_id"].nunique()),
            "user_prompt_tokens": _percentiles(frame["prompt_tokens"]),
            "prompts_with_history_cut": int((frame["history_in_prompt"] < frame["history_item_ids"].map(len)).sum()),
        }
        for split, frame in splits.items()
    }
    summary["dataset"] = statistics
    summary["items"] = {
        "items": len(item_prompts),
        "item_prompt_tokens": _percentiles(item_prompts["prompt_tokens"]),
        "items_with_text_cut": int(item_prompts["text_truncated"].sum()),
    }
    metrics = {}
    for split, block in summary.items():
        for key, value in block.items():
            values = value if isinstance(value, dict) else {"": value}
            for stat, number in values.items():
                name = ".".join(part for part in (split, key, stat) if part)
                metrics[name] = {"value": float(number), "step": 0}
    return summary, metrics
