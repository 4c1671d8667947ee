"""Kedro structure rules: nodes are pure functions of data and params (MLflow is written by hooks and
datasets), and no pipeline imports another pipeline's nodes (shared code lives outside ``pipelines/``)."""

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
                if parts[:2] == ["r2ec_pipeline", "pipelines"] and len(parts) > 2 and parts[2] != package.name:
                    crossing.append(f"{path.relative_to(PIPELINES)} imports {name}")
    assert not crossing, crossing


def test_the_checks_see_the_nodes_they_guard():
    files = _node_function_files()
    assert any(path.endswith("registration/nodes.py") for path in files)
    assert any(path.endswith("rl/runs.py") for path in files)  # shared node functions are checked too
