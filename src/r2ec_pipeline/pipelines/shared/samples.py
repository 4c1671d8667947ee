"""Which validation samples in-training validation ranks (the sft, recpo and ablation pipelines' node)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from r2ec_pipeline.config import parse_block
from r2ec_pipeline.data.samples import seeded_subset


def select_eval_samples(valid_samples: pd.DataFrame, params: dict[str, Any], block: str) -> pd.DataFrame:
    """The validation samples of in-training validation: the ``block``'s (sft, recpo) seeded ``eval_users``
    subset, or all of them. A node with ``block`` bound (``functools.partial``)."""
    config = parse_block(block, params)
    return seeded_subset(valid_samples, config.eval_users, config.seed)
