"""RecBole atomic files (MovieLens-100k's ``.inter`` and ``.item``) read straight from the recbole wheel.

Plain pandas, no Kedro: the catalog's dataset and the standalone GPU script read them the same way.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd

ML100K_MEMBERS = {
    "inter": "recbole/dataset_example/ml-100k/ml-100k.inter",
    "item": "recbole/dataset_example/ml-100k/ml-100k.item",
}


class AtomicFileError(ValueError):
    """The wheel is not a zip, or lacks a member; the message names which."""


def read_atomic_file(archive: zipfile.ZipFile, member: str) -> pd.DataFrame:
    """Read one atomic file; the ``name:type`` header becomes plain column names."""
    try:
        raw = archive.read(member)
    except KeyError:
        raise AtomicFileError(f"{member} not found inside {archive.filename}") from None
    frame = pd.read_csv(io.BytesIO(raw), sep="\t", dtype=str, keep_default_na=False, quoting=3)
    frame.columns = [column.split(":", 1)[0] for column in frame.columns]
    return frame


def read_wheel_tables(wheel: Path, members: dict[str, str] = ML100K_MEMBERS) -> dict[str, pd.DataFrame]:
    """Every named member of the wheel as a table (name → frame)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            return {name: read_atomic_file(archive, member) for name, member in members.items()}
    except zipfile.BadZipFile as error:
        raise AtomicFileError(f"{wheel} is not a valid wheel ({error}); delete it to fetch it again") from None
