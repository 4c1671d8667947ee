"""Shared fixtures: the tiny tokenizer, tiny tables, a Kedro project on them, a quiet offline environment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from transformers import PreTrainedTokenizerBase

from r2ec_pipeline.model.backbone import load_tokenizer
from tests.helpers import build_tiny_tokenizer, tiny_tables

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"

for _name, _value in {
    "KEDRO_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny-tokenizer"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerBase:
    return load_tokenizer(str(tiny_tokenizer_dir), tmp_path_factory.mktemp("cache"))


@pytest.fixture
def tables():
    return tiny_tables()


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers import build_tiny_backbone

    return build_tiny_backbone(tmp_path_factory.mktemp("tiny-backbone"))


@pytest.fixture
def project(tmp_path: Path, tiny_backbone_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's configuration in a temp folder, reading the tiny fixtures."""
    shutil.copytree(PROJECT_ROOT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("local"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(PROJECT_ROOT / "checkpoints", tmp_path / "checkpoints")  # trained on other data: skipped
    (tmp_path / "conf" / "local").mkdir()
    globals_ = {
        "backbone": str(tiny_backbone_dir),
        "amazon_dir": str(FIXTURES / "amazon"),
        "amazon_category": "Tiny_Instruments",
    }
    (tmp_path / "conf" / "local" / "globals.yml").write_text(yaml.safe_dump(globals_))
    monkeypatch.chdir(tmp_path)
    # An absolute URI per project: MLflow caches one SQL store per URI string, so the relative default
    # (sqlite:///mlflow.db) would keep writing to the first test's file. This also exercises the override.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from kedro.framework.project import configure_project

    configure_project("r2ec_pipeline")
    return tmp_path
