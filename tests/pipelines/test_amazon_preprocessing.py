"""The paper's Amazon preprocessing, one fixture case per rule (tests/fixtures/make_amazon_fixture.py: Rule_Cases).

Every expected count below is counted by hand from the fixture's rows.
"""

from datetime import date

import pandas as pd
import pytest
from kedro.io import DatasetError

from r2ec_pipeline.config import AmazonParams
from r2ec_pipeline.data.amazon import (
    clean_title,
    item_drop_reason,
    months_before,
    parse_price,
)
from r2ec_pipeline.data.samples import dataset_statistics, table5_line
from r2ec_pipeline.datasets.raw_sources import AmazonReviews2023Dataset
from r2ec_pipeline.pipelines.data_ingestion.nodes import amazon_tables, ingest
from tests.conftest import FIXTURES

AMAZON = FIXTURES / "amazon"


def _raw(suffix: str = ".jsonl.gz"):
    return AmazonReviews2023Dataset(
        reviews_path=str(AMAZON / f"Rule_Cases{suffix}"), meta_path=str(AMAZON / "meta_Rule_Cases.jsonl.gz")
    ).load()


def test_titles_are_unescaped_stripped_of_tags_and_non_ascii():
    assert clean_title("Capo &amp; Tuner Set") == "Capo & Tuner Set"
    assert clean_title("<b>Bold</b> Picks") == "Bold Picks"
    assert clean_title("Caf\u00e9 Ukulele \u266a") == "Caf Ukulele"
    assert clean_title(None) == ""


@pytest.mark.parametrize(
    ("price", "parsed"),
    [(9.99, 9.99), ("12.50", 12.5), (3, 3.0), ("None", None), (None, None), ("", None), ("$5", None), (True, None)],
)
def test_price_parses_numbers_and_numeric_strings_only(price, parsed):
    assert parse_price(price) == parsed


@pytest.mark.parametrize(
    ("title", "price", "reason"),
    [
        ("Guitar Strings", 9.99, None),
        ("", 9.99, "no_title"),
        ('<span id="deal">Deal</span> Mic', 5, "title_marker"),
        ("&lt;span id=&quot;x&quot;&gt;Mic", 5, "title_marker"),  # escaped marker counts too
        ("X", 5, "title_too_short"),
        (" ".join(["word"] * 21), 5, "title_too_long"),
        (" ".join(["word"] * 20), 5, None),
        ("Strap", "None", "price_unparsable"),
        ("Cable", None, "price_unparsable"),
    ],
)
def test_each_item_rule(title, price, reason):
    assert (
        item_drop_reason(
            title, price, max_title_words=20, min_title_chars=2, title_markers=("<span id",), require_price=True
        )
        == reason
    )


def test_the_window_moves_back_three_calendar_months_at_a_time():
    assert months_before(date(2022, 10, 1), 3) == date(2022, 7, 1)
    assert months_before(date(2023, 5, 31), 3) == date(2023, 2, 28)
    assert months_before(date(2023, 2, 15), 3) == date(2022, 11, 15)


def test_the_report_counts_every_drop_by_reason():
    interactions, items, report = amazon_tables(_raw()(), AmazonParams(min_items=5))
    assert report["items"] == {
        "read": 12,
        "kept": 5,
        "dropped": {
            "duplicate_item": 1,
            "no_title": 1,
            "title_marker": 1,
            "title_too_short": 1,
            "title_too_long": 1,
            "price_unparsable": 2,
        },
    }
    assert report["reviews"] == {
        "read": 18,
        "kept": 9,
        "dropped": {"item_without_metadata": 1, "item_dropped": 6, "outside_window": 1, "duplicate_review": 1},
    }
    assert report["window"]["start"] == "2022-10-01"  # 5 items in the first window: it does not move
    assert sorted(items["raw_item_id"]) == ["P01", "P02", "P03", "P04", "P13"]
    titles = items.set_index("raw_item_id")["title"]
    assert titles["P02"] == "Capo & Tuner Set" and titles["P03"] == "Bold Picks" and titles["P04"] == "Caf Ukulele"
    assert titles["P01"] == "Guitar Strings"  # the first of the duplicate rows
    assert len(interactions) == 9


def test_a_window_short_of_items_moves_back_by_three_months_until_the_data_ends():
    _, _, report = amazon_tables(_raw()(), AmazonParams(min_items=6))  # only 5 items survive the rules
    # 2022-10-01 → 2022-07-01 → 2022-04-01, the first start at or before the earliest review (2022-05-01)
    assert report["window"]["start"] == "2022-04-01" and report["window"]["start_step_months"] == 3
    assert "outside_window" not in report["reviews"]["dropped"]


def test_ingest_adds_the_users_below_the_minimum_and_the_final_sizes():
    _, _, report = ingest(None, _raw(), {"source": "amazon_2023", "amazon": {"min_items": 5}})
    assert report["reviews"]["dropped"]["user_below_min_interactions"] == 1  # U4 keeps one review
    assert report["reviews"]["kept"] == 8 and report["users"] == 3 and report["catalog_items"] == 5


def test_the_5core_csv_gives_what_the_jsonl_gives():
    from_csv, from_jsonl = _raw(".csv.gz")(), _raw()()
    pd.testing.assert_frame_equal(from_csv["reviews"].astype(str), from_jsonl["reviews"].astype(str))
    csv_tables = amazon_tables(from_csv, AmazonParams(min_items=5))
    jsonl_tables = amazon_tables(from_jsonl, AmazonParams(min_items=5))
    assert csv_tables[2] == jsonl_tables[2]
    pd.testing.assert_frame_equal(csv_tables[0], jsonl_tables[0])


def test_a_csv_without_the_5core_columns_is_named(tmp_path):
    bad = tmp_path / "Bad.csv"
    bad.write_text("user,item,rating,time\nu,p,5,1\n")
    dataset = AmazonReviews2023Dataset(reviews_path=str(bad), meta_path=str(AMAZON / "meta_Rule_Cases.jsonl.gz"))
    with pytest.raises(DatasetError, match=r"Bad.csv: missing column\(s\) \['user_id', 'parent_asin', 'timestamp'\]"):
        dataset.load()()


def test_table5_statistics_by_hand():
    interactions = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 3, 3], "item_id": [1, 2, 3, 4, 5, 1, 2, 3]})
    statistics = dataset_statistics(interactions, 5, {"train": 3, "valid": 1, "test": 1})
    assert statistics == {
        "users": 3,
        "items": 5,
        "interactions": 8,
        "density": 8 / 15,
        "samples": 5,
        "train": 3,
        "valid": 1,
        "test": 1,
    }
    assert table5_line(statistics) == "users 3 | items 5 | density 53.3333% | samples 5 (3 / 1 / 1)"
