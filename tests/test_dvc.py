"""dvc.yaml and the Kedro catalog describe the same files; every stage runs its own pipeline."""

from __future__ import annotations

import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.project import configure_project

from r2ec_pipeline.pipeline_registry import STAGES, register_pipelines
from tests.conftest import PROJECT_ROOT


configure_project("r2ec_pipeline")


def _dvc():
    return yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


def _catalog():
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base")
    return loader["catalog"]


def _filepath(entry: dict) -> str | None:
    return entry.get("filepath") or (entry.get("dataset") or {}).get("filepath")


def _paths(items) -> set[str]:
    return {next(iter(item)) if isinstance(item, dict) else item for item in items}


def test_one_stage_per_pipeline_running_it():
    stages = _dvc()
    assert list(stages) == list(STAGES)
    for name, stage in stages.items():
        assert stage["cmd"] == f"kedro run --pipelines {name}"


def test_stage_outs_are_exactly_the_file_outputs_of_its_pipeline():
    catalog, pipelines, stages = _catalog(), register_pipelines(), _dvc()
    for name, stage in stages.items():
        produced = {_filepath(catalog[d]) for d in pipelines[name].all_outputs() if d in catalog and _filepath(catalog[d])}
        raw_inputs = {_filepath(catalog[d]) for d in pipelines[name].inputs() if d.startswith("raw_") and _filepath(catalog[d])}
        assert _paths(stage["outs"]) | _paths(stage.get("metrics", [])) == produced | raw_inputs, name


def test_stage_deps_cover_the_files_its_pipeline_reads():
    catalog, pipelines, stages = _catalog(), register_pipelines(), _dvc()
    for name, stage in stages.items():
        read = {_filepath(catalog[d]) for d in pipelines[name].inputs() if d in catalog and _filepath(catalog[d])}
        read -= _paths(stage["outs"])  # the raw wheel is fetched by the stage itself
        assert read <= _paths(stage["deps"]), name


def test_stage_params_cover_every_parameter_block_its_pipeline_reads():
    pipelines = register_pipelines()
    for name, stage in _dvc().items():
        tracked = dict(next(iter(entry.items())) for entry in stage["params"])
        blocks = {p.removeprefix("params:") for p in pipelines[name].inputs() if p.startswith("params:")}
        assert name in blocks
        for block in blocks:
            path = f"conf/base/parameters_{block}.yml"
            assert tracked.get(path) == [block], (name, block)
            assert block in yaml.safe_load((PROJECT_ROOT / path).read_text())
