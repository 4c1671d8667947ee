"""What a run cost (seconds, memory) as MLflow metrics, kept out of the reports DVC hashes.

Timings and peak memory differ between two runs of the same code on the same data; in a DVC-tracked report
they would change its hash, and `dvc.lock`, on every run. They go to the stage's metric history instead,
logged as ``<stage>/run.<name>`` (``datasets.curves``), where the MLflow UI compares them across runs.
"""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cost_metrics(step: int, **figures: float) -> dict[str, list[dict[str, float]]]:
    """``{"run.<name>": [{"value": v, "step": step}]}``: the shape a metrics-history dataset logs."""
    return {f"run.{name}": [{"value": float(value), "step": step}] for name, value in figures.items()}
