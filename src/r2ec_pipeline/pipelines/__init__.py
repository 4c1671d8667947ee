"""One package per Kedro pipeline: ``nodes.py`` (pure functions) and ``pipeline.py`` (wiring)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_pipeline(package: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``create_pipeline`` on first use.

    A package using it imports its nodes without Kedro: ``benchmarks/gpu_run.py`` runs them on a GPU
    machine that has no Kedro.
    """

    def __getattr__(name: str) -> Any:
        if name == "create_pipeline":
            return importlib.import_module(f"{package}.pipeline").create_pipeline
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
