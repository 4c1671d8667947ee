"""Validation: each rule, broken on purpose, stops the pipeline run with that rule's name."""

import numpy as np
import pandas as pd
import pytest
from kedro.runner import SequentialRunner

from r2ec_pipeline.data.validation import DataValidationError
from r2ec_pipeline.pipelines.data_validation.nodes import validate_tables
from r2ec_pipeline.pipelines.data_validation.pipeline import create_pipeline
from tests.helpers import memory_catalog

PARAMS = {
    "rating_min": 1.0,
    "rating_max": 5.0,
    "timestamp_min": 0,
    "timestamp_max": 4102444800,
    "min_user_interactions": 2,
    "example_rows": 3,
}


def _catalog(interactions, items):
    return memory_catalog(
        {"interactions": interactions, "items": items, "params:data_validation": PARAMS},
        ["validation_report", "validation_data_docs", "validated_interactions", "validated_items"],
    )


def _run(interactions, items):
    catalog = _catalog(interactions, items)
    SequentialRunner().run(create_pipeline(), catalog)
    return catalog


def _null(frame, column, row=0):
    frame = frame.astype({column: "float64"})
    frame.loc[row, column] = np.nan
    return frame


CORRUPTIONS = {
    "user_id_not_null": lambda i, it: (_null(i, "user_id"), it),
    "item_id_not_null": lambda i, it: (_null(i, "item_id"), it),
    "item_exists_in_items": lambda i, it: (i.assign(item_id=i["item_id"].replace({6: 99})), it),
    "rating_not_null": lambda i, it: (_null(i, "rating"), it),
    "rating_within_scale": lambda i, it: (i.assign(rating=i["rating"].replace({5.0: 7.0})), it),
    "timestamp_not_null": lambda i, it: (_null(i, "timestamp"), it),
    "timestamp_valid": lambda i, it: (i.assign(timestamp=i["timestamp"].replace({100: -5})), it),
    "no_duplicate_user_item_timestamp": lambda i, it: (pd.concat([i, i.iloc[[0]]], ignore_index=True), it),
    "user_has_min_interactions": lambda i, it: (i[~((i["user_id"] == 3) & (i["item_id"] == 6))], it),
    "item_id_unique": lambda i, it: (i, pd.concat([it, it.iloc[[0]]], ignore_index=True)),
    "item_id_not_zero": lambda i, it: (i, pd.concat([it, it.iloc[[0]].assign(item_id=0)], ignore_index=True)),
    "title_not_null": lambda i, it: (i, it.assign(title=it["title"].where(it["item_id"] != 2, None))),
    "title_not_empty": lambda i, it: (i, it.assign(title=it["title"].where(it["item_id"] != 2, "  "))),
}


def test_clean_tables_pass_through_unchanged(tables):
    interactions, items = tables
    catalog = _run(interactions, items)
    report = catalog.load("validation_report")
    assert report["success"] and report["failed_rules"] == []
    assert len(report["results"]) == len(CORRUPTIONS) + 1  # + item_id_not_null on items
    pd.testing.assert_frame_equal(catalog.load("validated_interactions"), interactions)


@pytest.mark.parametrize("rule", sorted(CORRUPTIONS))
def test_each_broken_rule_stops_the_run_and_is_named(tables, rule):
    interactions, items = CORRUPTIONS[rule](*tables)
    catalog = _catalog(interactions.reset_index(drop=True), items)
    with pytest.raises(DataValidationError, match=rf"\b{rule}\b") as error:
        SequentialRunner().run(create_pipeline(), catalog)
    message = str(error.value)
    assert "examples:" in message and "rows" in message
    assert rule in catalog.load("validation_report")["failed_rules"]  # the report is still written
    assert not catalog.exists("validated_interactions") and not catalog.exists("validated_items")


def test_failure_report_counts_and_quotes_the_bad_rows(tables):
    interactions, items = tables
    bad = interactions.assign(rating=interactions["rating"].replace({5.0: 7.0}))
    report, _ = validate_tables(bad, items, PARAMS)
    entry = next(e for e in report["results"] if e["rule"] == "rating_within_scale")
    assert not report["success"] and report["failed_rules"] == ["rating_within_scale"]
    assert entry["unexpected_count"] == 3 and entry["element_count"] == len(bad)
    assert [row["rating"] for row in entry["examples"]] == [7.0, 7.0, 7.0]


def test_data_docs_show_each_table_and_the_failing_rule(tables, tmp_path):
    """GX's Data Docs: an index, one page per validation, the broken rule's failing values on its page."""
    from r2ec_pipeline.datasets.reports import SiteDataset

    interactions, items = tables
    bad = interactions.assign(rating=interactions["rating"].replace({5.0: 7.0}))
    report, site = validate_tables(bad, items, PARAMS)
    pages = [name for name in site if name.startswith("validations/") and name.endswith(".html")]
    assert "index.html" in site and len(pages) == 3  # interactions, items, user activity
    [ratings] = [site[name].decode() for name in pages if "/interactions/" in name]
    assert "rating_within_scale" in ratings and "7.0" in ratings
    dataset = SiteDataset(str(tmp_path / "docs"))
    dataset.save(site)
    assert dataset.load() == tmp_path / "docs/index.html" and (tmp_path / "docs" / pages[0]).is_file()
    # GX's index draws its tables with scripts from CDNs; the overview is static and links each page
    overview = site["overview.html"].decode()
    assert "failed: rating_within_scale" in overview and "FAILED: " in overview
    assert overview.count('<a href="validations/') == len(report["results"]) and "<script" not in overview
