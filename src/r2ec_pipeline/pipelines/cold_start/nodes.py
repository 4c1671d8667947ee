"""Nodes of the cold-start evaluation: hold the newest items out, add them after training by a catalog
update, and rank the test users whose target is one of them.

The training between ``hold_out_newest_items`` and ``add_held_out_items`` is the ``make run`` chain
(prompts, baselines, sft, recpo) in the ``cold_start`` namespace, with the same parameters. Every model
then ranks the same users from the same prompts over the whole catalog, history masked: R²ec trained
without the items (added by the catalog update), Pop and SASRec trained without them (restricted to what
they can rank: the new items score lowest), and the ``make run`` models that knew them. Each model ranks
in its own catalog's ids; rankings carry raw ids so they compare across catalogs.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from r2ec_pipeline.baselines.popularity import Popularity
from r2ec_pipeline.baselines.sasrec import SASRec, catalog_scores
from r2ec_pipeline.config import parse_block
from r2ec_pipeline.data.samples import mask_lists
from r2ec_pipeline.data.validation import enforce
from r2ec_pipeline.items.cold_start import (
    hold_out,
    id_map,
    newest_items,
    remap_interactions,
    remap_samples,
)
from r2ec_pipeline.items.rows import CATALOG_COLUMNS
from r2ec_pipeline.items.update import check_item_rows, encode_update
from r2ec_pipeline.metrics import ranking_metrics
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.rankings import rank_r2ec, rank_scores
from r2ec_pipeline.reporting.statistics import paired_differences
from r2ec_pipeline.reporting.tables import CI_METRICS, cold_start_tables, flatten, markdown_table

logger = logging.getLogger(__name__)
DATA_DOCS = "data/08_reporting/cold_start_data_docs"
VALIDATION_REPORT = "data/08_reporting/cold_start_validation.json"
COLD, KNOWN = "cold", "known"  # the held-out items added after training | in the catalog at training time
# A few dozen users and targets no model has seen: hits in the top 10 are rare, so MRR (the full ranking)
# is compared too, as in-training validation selects on it.
COMPARED_METRICS = (*CI_METRICS, "mrr")


def hold_out_newest_items(
    interactions: pd.DataFrame, items: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What the cold-start models train on (interactions and catalog without the newest items, re-numbered)
    and the held-out items' catalog rows (original ids)."""
    fraction = parse_block("cold_start", params).held_out_fraction
    split = hold_out(interactions, items, newest_items(interactions, fraction))
    logger.info(
        "cold start: %d of %d items held out (%d interactions)",
        len(split.held_out),
        len(items),
        len(interactions) - len(split.interactions),
    )
    return split.interactions, split.items, split.held_out


def check_held_out_items(
    held_out_items: pd.DataFrame, training_items: pd.DataFrame, validation_params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, bytes]]:
    """The held-out rows as a catalog update's new rows (no ids), matched and checked by the update's GX rules."""
    rows = held_out_items.drop(columns="item_id")
    example_rows = parse_block("data_validation", validation_params).example_rows
    return check_item_rows(rows, training_items, allow_updates=False, example_rows=example_rows)


def add_held_out_items(
    model: R2ecModel,
    training_items: pd.DataFrame,
    report: dict[str, Any],
    matched: pd.DataFrame,
    prompts_params: dict[str, Any],
    model_params: dict[str, Any],
) -> tuple[R2ecModel, pd.DataFrame, dict[str, Any]]:
    """The catalog update after training: the held-out items encoded into the trained model's table (its
    other rows unchanged), the updated catalog, and what the update did. Stops if a GX rule failed."""
    enforce(report, DATA_DOCS, VALIDATION_REPORT)
    update = encode_update(
        model,
        training_items[CATALOG_COLUMNS],
        matched,
        parse_block("prompts", prompts_params),
        parse_block("model", model_params).item_batch_size,
    )
    logger.info(
        "cold start: %d held-out items added to the trained model's catalog in %.1f s",
        len(update.plan.added),
        update.seconds,
    )
    return model, update.plan.catalog, update.report()


def select_cold_start_users(test_samples: pd.DataFrame, held_out_items: pd.DataFrame) -> pd.DataFrame:
    """The test samples (``make run``'s, full catalog ids) whose target is a held-out item, every one of them."""
    cold = test_samples[test_samples["target_item_id"].isin(held_out_items["item_id"])]
    logger.info("cold start: %d of %d test users have a held-out target", len(cold), len(test_samples))
    return cold.assign(split="test").reset_index(drop=True)


def _with_raw_ids(rows: pd.DataFrame, catalog: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Ranking rows with the catalog they were ranked in (``setting``) and their items' raw ids."""
    raw = dict(zip(catalog["item_id"].astype(int), catalog["raw_item_id"].astype(str), strict=True))
    return rows.assign(
        setting=setting,
        target_raw_item_id=rows["target_item_id"].map(raw),
        topk_raw_item_ids=[[raw[int(i)] for i in ids] for ids in rows["topk_item_ids"]],
    )


def rank_known_r2ec(
    model: R2ecModel,
    samples: pd.DataFrame,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    model_params: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """``make run``'s RecPO model (the items in its catalog at training time), both modes, every user."""
    model_config, config = parse_block("model", model_params), parse_block("evaluation", params)
    rows = rank_r2ec("recpo", model, samples, interactions, model_config, config, reasoning_users=None)
    return _with_raw_ids(rows, items, KNOWN)


def rank_cold_r2ec(
    model: R2ecModel,
    catalog: pd.DataFrame,
    samples: pd.DataFrame,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    model_params: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """The RecPO model trained without the held-out items, after the catalog update, on the same prompts
    (histories, targets and masks in its catalog's ids), both modes, every user."""
    ids = id_map(items, catalog)
    rows = rank_r2ec(
        "recpo",
        model,
        remap_samples(samples, ids),
        remap_interactions(interactions, ids),
        parse_block("model", model_params),
        parse_block("evaluation", params),
        reasoning_users=None,
    )
    return _with_raw_ids(rows, catalog, COLD)


def rank_baselines(
    cold_popularity: pd.DataFrame,
    cold_sasrec: SASRec,
    popularity: pd.DataFrame,
    sasrec: SASRec,
    catalog: pd.DataFrame,
    samples: pd.DataFrame,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    model_params: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """Pop and SASRec trained without the held-out items (they score them lowest: no count, no embedding)
    and ``make run``'s, which knew them, on the same users."""
    history_mask, top_n = parse_block("model", model_params).history_mask, parse_block("evaluation", params).top_n
    parts = []
    trained = ((COLD, cold_popularity, cold_sasrec, catalog), (KNOWN, popularity, sasrec, items))
    for setting, counts, model, table in trained:
        ids = id_map(items, table)
        mapped, seen = remap_samples(samples, ids), remap_interactions(interactions, ids)
        masks, full = mask_lists(mapped, seen, history_mask), mask_lists(mapped, seen, "full")
        size = int(table["item_id"].max())
        parts += [
            _with_raw_ids(
                rank_scores("popularity", Popularity.from_counts(counts, size).score(masks), mapped, masks, top_n),
                table,
                setting,
            ),
            _with_raw_ids(
                rank_scores("sasrec", catalog_scores(model, list(full), size), mapped, masks, top_n), table, setting
            ),
        ]
    return pd.concat(parts, ignore_index=True)


def cold_start_comparisons(rankings: pd.DataFrame, seed: int) -> dict[str, Any]:
    """Paired bootstrap 95% CIs (users resampled) of R²ec after the catalog update minus each other model on
    the same users: Pop and SASRec trained without the items, and R²ec that knew them (the same mode)."""
    ranks = {
        ".".join(key): frame.set_index("user_id")["rank"]
        for key, frame in rankings.groupby(["setting", "model", "mode"])
    }
    result = {}
    for mode in sorted(rankings.loc[rankings["model"] == "recpo", "mode"].unique()):
        a = f"{COLD}.recpo.{mode}"
        for b in (f"{COLD}.popularity.direct", f"{COLD}.sasrec.direct", f"{KNOWN}.recpo.{mode}"):
            result[f"{a}-{b}"] = paired_differences(ranks[a], ranks[b], COMPARED_METRICS, seed=seed)
    return result


def summarise_cold_start(
    known: pd.DataFrame,
    cold: pd.DataFrame,
    baselines: pd.DataFrame,
    update: dict[str, Any],
    held_out_items: pd.DataFrame,
    params: dict[str, Any],
    cold_start_params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, list[dict[str, float]]], pd.DataFrame]:
    """The cold-start report (held-out items, users, the update, every model's metrics by setting and mode,
    the paired CIs), the same numbers as MLflow metrics, and every ranking in one table."""
    config = parse_block("evaluation", params)
    rankings = pd.concat([cold, known, baselines], ignore_index=True)
    metrics: dict[str, Any] = {}
    for (setting, model, mode), frame in rankings.groupby(["setting", "model", "mode"], sort=False):
        metrics.setdefault(setting, {}).setdefault(model, {})[mode] = {
            **ranking_metrics(frame["rank"], config.ks),
            "median_rank": float(frame["rank"].median()),
            "users": len(frame),
        }
    report = {
        "held_out": {
            "fraction": parse_block("cold_start", cold_start_params).held_out_fraction,
            "items": len(held_out_items),
            "catalog_items": update["items_after"],
        },
        "users": int(cold["user_id"].nunique()),
        "update": {key: value for key, value in update.items() if key not in ("added", "updated")},
        "metrics": metrics,
        "comparisons": cold_start_comparisons(rankings, config.seed),
    }
    logger.info(
        "cold start on %d users:\n%s", report["users"], "\n\n".join(map(markdown_table, cold_start_tables(report)))
    )
    numbers = flatten({key: report[key] for key in ("users", "update", "metrics", "comparisons")})
    return report, {name: [{"value": value, "step": 0}] for name, value in numbers.items()}, rankings
