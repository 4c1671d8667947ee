"""Kedro structure rules: nodes are pure functions of data and params (MLflow is written by hooks and
datasets) living under ``pipelines/``; no pipeline imports another pipeline's modules (node functions
several pipelines run live in ``pipelines/shared/``); the library packages take typed parameters and
import without Kedro."""

from __future__ import annotations

import ast
import functools
import inspect
from pathlib import Path

from r2ec_pipeline.pipeline_registry import register_pipelines

PIPELINES = Path(__file__).resolve().parents[1] / "src/r2ec_pipeline/pipelines"


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _node_function_files() -> dict[str, set[str]]:
    """File of every node function of every registered pipeline → the nodes it defines."""
    files: dict[str, set[str]] = {}
    for pipeline in register_pipelines().values():
        for node in pipeline.nodes:
            func = node.func.func if isinstance(node.func, functools.partial) else node.func
            files.setdefault(inspect.getsourcefile(func), set()).add(node.name)
    return files


def test_no_node_function_calls_mlflow():
    offenders = {
        path: sorted(nodes)
        for path, nodes in _node_function_files().items()
        if any(name == "mlflow" or name.startswith("mlflow.") for name in _imported_modules(Path(path)))
    }
    assert not offenders, f"node code imports mlflow (log through a dataset or a hook instead): {offenders}"


def test_no_pipeline_imports_another_pipelines_modules():
    crossing = []
    for package in (p for p in PIPELINES.iterdir() if (p / "pipeline.py").is_file()):
        for path in package.glob("*.py"):
            for name in _imported_modules(path):
                parts = name.split(".")
                if (
                    parts[:2] == ["r2ec_pipeline", "pipelines"]
                    and len(parts) > 2
                    and parts[2] not in (package.name, "shared")
                ):
                    crossing.append(f"{path.relative_to(PIPELINES)} imports {name}")
    assert not crossing, crossing


def test_the_checks_see_the_nodes_they_guard():
    files = _node_function_files()
    assert any(path.endswith("registration/nodes.py") for path in files)
    assert any(path.endswith("pipelines/shared/recpo.py") for path in files)  # shared node functions are checked too


LIBRARY = ("data", "model", "rl", "baselines", "serving", "items")


def test_every_node_function_lives_under_pipelines():
    outside = {path: sorted(nodes) for path, nodes in _node_function_files().items() if str(PIPELINES) not in path}
    assert not outside, (
        f"node functions outside pipelines/ (move them, or wrap typed library code in a node): {outside}"
    )


def _calls(path: Path, names: set[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in names:
                found.append(f"{path.relative_to(PIPELINES.parent)}:{node.lineno} calls {name}")
    return found


def test_library_packages_take_typed_parameters_and_import_without_kedro():
    """data/, model/, rl/, baselines/, serving/, items/ never parse a Kedro parameter block nor import Kedro: node
    functions under pipelines/ parse the blocks and pass typed parameters in."""
    problems = []
    for package in LIBRARY:
        for path in sorted((PIPELINES.parent / package).rglob("*.py")):
            problems += _calls(path, {"parse_block", "validate_parameters"})
            problems += [f"{path.name} imports {name}" for name in _imported_modules(path) if name.startswith("kedro")]
    assert not problems, problems


def test_pipeline_packages_import_their_nodes_without_kedro():
    """A pipeline's ``__init__`` imports nothing and its ``nodes.py`` no Kedro: the node functions import
    without Kedro's runtime (``device_run`` on a GPU machine needs only ``kedro.pipeline``, in ``pipeline.py``)."""
    problems = []
    for package in (p for p in PIPELINES.iterdir() if p.is_dir() and p.name != "__pycache__"):
        if _imported_modules(package / "__init__.py"):
            problems.append(f"{package.name}/__init__.py imports {sorted(_imported_modules(package / '__init__.py'))}")
        for path in package.glob("*.py"):
            if path.name != "pipeline.py" and any(n.startswith("kedro") for n in _imported_modules(path)):
                problems.append(f"{package.name}/{path.name} imports Kedro")
    assert not problems, problems


def test_the_project_itself_switches_kedro_telemetry_off(monkeypatch):
    """Every kedro command in the project (not only the Makefile's, which also sets the variable) sends nothing."""
    from kedro_telemetry.plugin import _check_for_telemetry_consent

    for variable in ("KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
        monkeypatch.delenv(variable, raising=False)
    assert _check_for_telemetry_consent(PIPELINES.parents[2]) is False
