"""Amazon Reviews 2023 preprocessing as the paper's public code does it, every drop counted by reason.

Items (metadata rows) are dropped, in this order of reasons, when they repeat a ``parent_asin``
(``duplicate_item``), have no title (``no_title``), a title holding a marker such as ``<span id``
(``title_marker``), a cleaned title of one character or less (``title_too_short``) or of more than
20 words (``title_too_long``), or a ``price`` that does not parse as a number (``price_unparsable``:
the public metadata writes it as a number, a numeric string, the string "None" or null). Titles are
cleaned by unescaping HTML entities, stripping HTML tags and non-ASCII characters, and collapsing
whitespace. Reviews are dropped when their item has no metadata row (``item_without_metadata``) or
was dropped (``item_dropped``), fall outside the window (``outside_window``), or repeat a
(user, item, timestamp) (``duplicate_review``). Plain pandas: no Kedro.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


def clean_title(raw: Any) -> str:
    """HTML entities unescaped, tags and non-ASCII characters removed, whitespace collapsed."""
    if raw is None or (isinstance(raw, float) and pd.isna(raw)):
        return ""
    text = _TAG.sub(" ", html.unescape(str(raw)))
    return _SPACES.sub(" ", text.encode("ascii", "ignore").decode("ascii")).strip()


def parse_price(value: Any) -> float | None:
    """The price as a number, or None when it is null, "None", empty or not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip().replace(",", ""))
    except ValueError:
        return None
    return None if pd.isna(number) else number


def item_drop_reason(
    title: Any,
    price: Any,
    max_title_words: int,
    min_title_chars: int,
    title_markers: tuple[str, ...],
    require_price: bool,
) -> str | None:
    """Why an item is dropped (the first rule it breaks), or None if it is kept."""
    raw = "" if title is None or (isinstance(title, float) and pd.isna(title)) else str(title)
    if not raw.strip():
        return "no_title"
    if any(marker in raw or marker in html.unescape(raw) for marker in title_markers):
        return "title_marker"
    cleaned = clean_title(raw)
    if len(cleaned) < min_title_chars:
        return "title_too_short"
    if len(cleaned.split()) > max_title_words:
        return "title_too_long"
    if require_price and parse_price(price) is None:
        return "price_unparsable"
    return None


def filter_items(
    meta: pd.DataFrame, max_title_words: int, min_title_chars: int, title_markers: tuple[str, ...], require_price: bool
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Kept metadata rows with cleaned titles, and the number dropped per reason."""
    drops: Counter[str] = Counter()
    duplicate = meta["parent_asin"].duplicated()
    drops["duplicate_item"] = int(duplicate.sum())
    meta = meta[~duplicate]
    reasons = [
        item_drop_reason(title, price, max_title_words, min_title_chars, title_markers, require_price)
        for title, price in zip(meta["title"], meta["price"], strict=True)
    ]
    drops.update(reason for reason in reasons if reason)
    kept = meta[[reason is None for reason in reasons]]
    return kept.assign(title=kept["title"].map(clean_title)), {reason: n for reason, n in drops.items() if n}


def description_text(value: Any) -> str:
    """The metadata's description (a list of paragraphs) as one line of text; empty when missing."""
    if isinstance(value, list):
        return " ".join(str(part).strip() for part in value if str(part).strip())
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()


def meta_items(meta: pd.DataFrame) -> pd.DataFrame:
    """Metadata rows (``parent_asin``, ``title``, ...) in the project's item schema: raw_item_id, title and
    the text fields item prompts show. Titles are taken as they are (``filter_items`` cleans them)."""

    def column(name: str) -> pd.Series:
        return meta[name] if name in meta.columns else pd.Series([None] * len(meta), index=meta.index)

    return pd.DataFrame(
        {
            "raw_item_id": meta["parent_asin"].astype(str),
            "title": meta["title"],
            "description": column("description").map(description_text),
            "average_rating": column("average_rating"),
            "rating_number": column("rating_number"),
        }
    )


def to_unix(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def months_before(day: date, months: int) -> date:
    """The same day of the month ``months`` earlier (clamped to the month's last day)."""
    total = day.year * 12 + day.month - 1 - months
    year, month = divmod(total, 12)
    month += 1
    last = (date(year + (month == 12), month % 12 + 1, 1) - date(year, month, 1)).days
    return date(year, month, min(day.day, last))


def window_start(
    seconds: pd.Series, items: pd.Series, start: date, end: date, min_items: int, step_months: int
) -> date:
    """Move ``start`` back ``step_months`` at a time until [start, end) holds ``min_items`` items (or all data)."""
    earliest = int(seconds.min()) if len(seconds) else to_unix(start)
    while True:
        in_window = (seconds >= to_unix(start)) & (seconds < to_unix(end))
        if items[in_window].nunique() >= min_items or to_unix(start) <= earliest:
            return start
        start = months_before(start, step_months)
