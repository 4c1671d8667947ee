"""Read-only Kedro datasets for the raw recommendation sources.

Both load *lazily*: ``load()`` returns a zero-argument reader, as Kedro's ``PartitionedDataset``
does, so the ingestion node can take every source as input and read only the one its parameters
select (a user with Amazon files only never downloads MovieLens, and vice versa).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from r2ec_pipeline.data.atomic_files import (
    ML100K_MEMBERS,
    AtomicFileError,
    read_wheel_tables,
)

logger = logging.getLogger(__name__)

RawTables = dict[str, pd.DataFrame]
LazyTables = Callable[[], RawTables]


class _ReadOnlyDataset(AbstractDataset[None, LazyTables]):
    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only: raw data is never overwritten")


class RecboleWheelDataset(_ReadOnlyDataset):
    """MovieLens-100k atomic files (``.inter``, ``.item``) read from inside the recbole wheel.

    The wheel is fetched once with ``pip download --no-deps`` (PyPI is reachable; recbole is neither
    installed nor imported) and kept at ``filepath``; the files are read straight from the zip.
    """

    def __init__(
        self,
        filepath: str,
        requirement: str = "recbole==1.2.1",
        members: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = Path(filepath)
        self._requirement = requirement
        self._members = members or ML100K_MEMBERS
        self.metadata = metadata

    def load(self) -> LazyTables:
        return self._read

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "requirement": self._requirement}

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def fetch(self) -> Path:
        """Download the wheel if it is not there yet; the file appears only once complete."""
        if self._filepath.is_file():
            return self._filepath
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._filepath.parent) as staging:
            command = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
                "-d",
                staging,
                self._requirement,
            ]
            logger.info("fetching %s into %s", self._requirement, self._filepath.parent)
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            wheels = list(Path(staging).glob("*.whl"))
            if done.returncode != 0 or len(wheels) != 1:
                raise DatasetError(
                    f"could not download {self._requirement} (pip exit {done.returncode}): "
                    f"{done.stderr.strip()[-500:]}. Place the wheel at {self._filepath} to work offline."
                )
            os.replace(wheels[0], self._filepath)
        return self._filepath

    def _read(self) -> RawTables:
        try:
            return read_wheel_tables(self.fetch(), self._members)
        except AtomicFileError as error:
            raise DatasetError(str(error)) from None


REVIEW_FIELDS = ("user_id", "parent_asin", "rating", "timestamp")
META_FIELDS = ("parent_asin", "title", "description", "average_rating", "rating_number", "price")


class AmazonReviews2023Dataset(_ReadOnlyDataset):
    """One Amazon Reviews 2023 category: its reviews and ``meta_<Category>.jsonl(.gz)``.

    The reviews are the raw ``<Category>.jsonl(.gz)`` or the category's 5-core rating file
    (``benchmark/5core/rating_only/<Category>.csv(.gz)``: user_id, parent_asin, rating, timestamp),
    as the paper's code reads it; the file's name says which.

    Files are streamed line by line and only the fields the pipeline uses are kept, so a category
    with millions of reviews fits in memory. A line that is not a JSON object, or lacks a field,
    stops the load with the file name and line number.
    """

    def __init__(
        self,
        reviews_path: str,
        meta_path: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._reviews_path = Path(reviews_path)
        self._meta_path = Path(meta_path)
        self.metadata = metadata

    def load(self) -> LazyTables:
        return self._read

    def _describe(self) -> dict[str, Any]:
        return {"reviews_path": str(self._reviews_path), "meta_path": str(self._meta_path)}

    def _exists(self) -> bool:
        return self._reviews_path.is_file() and self._meta_path.is_file()

    def _read(self) -> RawTables:
        for path in (self._reviews_path, self._meta_path):
            if not path.is_file():
                raise DatasetError(
                    f"Amazon Reviews 2023 file not found: {path} (set amazon_dir / amazon_category in "
                    "conf/base/globals.yml or conf/local/globals.yml)"
                )
        if self._reviews_path.name.endswith((".csv", ".csv.gz")):
            reviews = _five_core_csv(self._reviews_path)
        else:
            reviews = pd.DataFrame.from_records(
                _records(self._reviews_path, REVIEW_FIELDS, required=REVIEW_FIELDS), columns=list(REVIEW_FIELDS)
            )
        meta = pd.DataFrame.from_records(
            _records(self._meta_path, META_FIELDS, required=("parent_asin",)), columns=list(META_FIELDS)
        )
        logger.info("read %d reviews and %d item records", len(reviews), len(meta))
        return {"reviews": reviews, "meta": meta}


def _five_core_csv(path: Path) -> pd.DataFrame:
    """The 5-core rating file; a missing column stops the load with the file and the columns it has."""
    frame = pd.read_csv(path, dtype={"user_id": str, "parent_asin": str})
    missing = [column for column in REVIEW_FIELDS if column not in frame.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {missing}; it has {list(frame.columns)} "
            f"(expected the 5-core rating_only format: {list(REVIEW_FIELDS)})"
        )
    return frame[list(REVIEW_FIELDS)]


def _open_text(path: Path) -> TextIO:
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def _records(path: Path, fields: tuple[str, ...], required: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}:{number}: malformed JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            missing = [field for field in required if row.get(field) is None]
            if missing:
                raise DatasetError(f"{path}:{number}: missing field(s) {missing}")
            yield tuple(row.get(field) for field in fields)
