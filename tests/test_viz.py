"""`kedro viz build` (the optional kedro-viz extra, installed by `make test`) renders the project's DAG."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytest.importorskip("kedro_viz", reason="kedro-viz is the `viz` extra")

LAYERS = ["raw", "intermediate", "primary", "model_input", "models", "model_output", "reporting"]


def test_kedro_viz_build_writes_a_static_site_with_every_pipeline_and_the_data_layers(tmp_path: Path):
    shutil.copytree(PROJECT_ROOT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("local"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "src").mkdir()  # the kedro CLI wants a source folder; the package is installed
    done = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    site = tmp_path / "build"
    assert (site / "index.html").is_file() and "<html" in (site / "index.html").read_text().lower()
    graph = json.loads((site / "api" / "main").read_text())
    assert graph["layers"] == LAYERS  # no circular layer dependency, so kedro-viz draws the layers
    pipelines = {pipeline["id"] for pipeline in graph["pipelines"]}
    assert {"__default__", "data_ingestion", "sft", "recpo", "evaluation", "registration"} <= pipelines
    names = {node["name"] for node in graph["nodes"]}
    assert {"train_sft", "train_recpo", "register_model", "recpo_model"} <= names
