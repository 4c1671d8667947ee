"""dvc.yaml and the Kedro catalog describe the same files; every stage runs its own pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

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


def _written_path(entry: dict) -> str | None:
    """A file output's filepath, or a folder output's path (a site, a model folder)."""
    return _filepath(entry) or entry.get("path")


def _paths(items) -> set[str]:
    return {next(iter(item)) if isinstance(item, dict) else item for item in items}


def test_one_stage_per_pipeline_running_it():
    stages = _dvc()
    assert list(stages) == list(STAGES)
    for name, stage in stages.items():
        assert stage["cmd"] == f"kedro run --pipelines {name}"


def _tracked(entry: dict) -> bool:
    """Whether DVC versions this output (``metadata: {dvc_out: false}`` marks time-stamped reports)."""
    return (entry.get("metadata") or {}).get("dvc_out", True)


def test_stage_outs_are_exactly_the_file_outputs_of_its_pipeline():
    catalog, pipelines, stages = _catalog(), register_pipelines(), _dvc()
    for name, stage in stages.items():
        produced = {
            _written_path(catalog[d])
            for d in pipelines[name].all_outputs()
            if d in catalog and _written_path(catalog[d]) and _tracked(catalog[d])
        }
        raw_inputs = {
            _filepath(catalog[d]) for d in pipelines[name].inputs() if d.startswith("raw_") and _filepath(catalog[d])
        }
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


def test_registration_runs_after_the_recpo_stage_that_writes_its_checkpoint():
    """`--pipelines recpo,registration` must register the model recpo just trained, not the one on disk."""
    pipelines = register_pipelines()
    order = [node.name for node in (pipelines["recpo"] + pipelines["registration"]).nodes]
    assert order.index("register_model") > order.index("train_recpo")
    assert "recpo_model@folder" in pipelines["registration"].inputs()


SOURCE = PROJECT_ROOT / "src"


def _module_file(name: str) -> Path | None:
    """The file of first-party module ``name`` (a package's __init__.py), or None for third-party names."""
    if not name.startswith("r2ec_pipeline"):
        return None
    base = SOURCE / name.replace(".", "/")
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.exists()), None)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from package import module`
    return names


def _has_code(path: Path) -> bool:
    """Whether a file imports or defines anything (a docstring-only package __init__ cannot change results)."""
    kinds = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    return any(isinstance(node, kinds) for node in ast.walk(ast.parse(path.read_text())))


def _first_party_closure(roots: set[str]) -> set[Path]:
    """The first-party files reachable from ``roots`` through imports (parent packages' __init__ included)."""
    seen: set[Path] = set()
    pending = [f for f in map(_module_file, roots) if f]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        parents = [".".join(path.relative_to(SOURCE).with_suffix("").parts[:i]) for i in range(1, len(path.parts))]
        pending += [f for f in map(_module_file, _imports(path) | set(parents)) if f and f not in seen]
    return {path for path in seen if path.name != "__init__.py" or _has_code(path)}


def _stage_modules(name: str, pipeline, catalog: dict) -> set[Path]:
    """What a stage's results depend on: its pipeline package and the dataset classes of its catalog entries."""
    datasets = {
        entry["type"].rsplit(".", 1)[0]
        for d in pipeline.datasets()
        if isinstance(entry := catalog.get(d), dict) and str(entry.get("type", "")).startswith("r2ec_pipeline.")
    }
    nested = {
        entry["dataset"]["type"].rsplit(".", 1)[0]
        for d in pipeline.datasets()
        if isinstance(entry := catalog.get(d), dict)
        and isinstance(entry.get("dataset"), dict)
        and str(entry["dataset"].get("type", "")).startswith("r2ec_pipeline.")
    }
    package = SOURCE / "r2ec_pipeline/pipelines" / name
    roots = {f"r2ec_pipeline.pipelines.{name}.{p.stem}" for p in package.glob("*.py")} | datasets | nested
    return _first_party_closure(roots)


def test_stage_code_deps_cover_every_module_its_pipeline_imports():
    """Editing any module a stage imports (transitively) must make that stage stale in `dvc status`."""
    catalog, pipelines, stages = _catalog(), register_pipelines(), _dvc()
    for name, stage in stages.items():
        deps = [PROJECT_ROOT / d for d in _paths(stage["deps"]) if d.startswith("src/")]
        uncovered = sorted(
            str(path.relative_to(PROJECT_ROOT))
            for path in _stage_modules(name, pipelines[name], catalog)
            if not any(path == dep or dep in path.parents for dep in deps)
        )
        assert not uncovered, f"dvc.yaml stage {name} does not depend on {uncovered}"


def test_the_import_closure_follows_imports_into_packages_and_their_modules():
    modules = _first_party_closure({"r2ec_pipeline.pipelines.registration.pipeline", "r2ec_pipeline.rl.losses"})
    names = {str(p.relative_to(SOURCE)) for p in modules}
    assert {
        "r2ec_pipeline/pipelines/registration/nodes.py",
        "r2ec_pipeline/serving/registry.py",
        "r2ec_pipeline/config/__init__.py",
        "r2ec_pipeline/rl/__init__.py",
        "r2ec_pipeline/rl/rewards.py",
    } <= names


def test_dvc_plots_show_draws_every_declared_curve(tmp_path):
    """`dvc plots show` on the tables the evaluation stage writes: each declared plot finds its data."""
    import json
    import shutil
    import subprocess
    import sys

    from r2ec_pipeline.pipelines.evaluation.nodes import curve_tables

    shutil.copy(PROJECT_ROOT / "dvc.yaml", tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    tables = curve_tables(
        {
            "curves": {"reward_mean": [0.1], "reward_rank": [0.2], "reward_sim": [0.0], "completion_length": [30.0]},
            "validation_by_step": {"reasoning": {"0": 0.01}, "direct": {"0": 0.02}},
        },
        {"loss_by_step": [3.9], "validation_by_step": {"0": 0.004}},
        {},
    )
    folder = tmp_path / "data/08_reporting/curves"
    folder.mkdir(parents=True)
    for name, rows in tables.items():
        (folder / f"{name}.json").write_text(json.dumps(rows))
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "DVC_NO_ANALYTICS": "1"},
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    declared = [next(iter(entry)) for entry in _dvc_file()["plots"]]
    assert not shown.get("errors") and set(declared) <= set(shown["data"])
    for name in declared:
        assert shown["data"][name][0]["content"]["data"]["values"], name  # each plot found its rows


def test_dvc_metrics_show_prints_a_row_per_model_and_mode(tmp_path):
    """`dvc metrics show` on the files the evaluation stage writes: one short row per file, no errors."""
    import json
    import subprocess
    import sys

    from r2ec_pipeline.pipelines.evaluation.nodes import headline_metrics

    (tmp_path / "dvc.yaml").write_text((PROJECT_ROOT / "dvc.yaml").read_text())
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    values = {"hit_at_10": 0.2, "ndcg_at_10": 0.1, "mrr": 0.05, "users": 943}
    folder = tmp_path / "data/08_reporting/metrics"
    folder.mkdir(parents=True)
    for name, row in headline_metrics({"test": {"popularity": {"direct": values}, "sft": {"direct": values}}}).items():
        (folder / f"{name}.json").write_text(json.dumps(row))
    env = {**__import__("os").environ, "DVC_NO_ANALYTICS": "1"}
    shown = subprocess.run(
        [sys.executable, "-m", "dvc", "metrics", "show"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0 and "ERROR" not in shown.stderr, shown.stderr
    lines = shown.stdout.strip().splitlines()
    assert len(lines) == 3 and max(len(line) for line in lines) < 120, shown.stdout  # header + a row per file


def _dvc_file():
    return yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
