"""What an SFT run returns, whichever engine trained it (``model/sft.py`` or ``model/sft_batched.py``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SFTResult:
    history: dict[str, list[dict[str, float]]]  # metric name → [{"value", "step"}], for MLflow
    initial_metrics: dict[str, float]  # validation metrics before training (zero-shot)
    best_metrics: dict[str, float]  # validation metrics of the weights kept
    best_step: int
    seconds_per_step: float
    steps_run: int  # fewer than planned when validation or time stopped early
    samples_run: int = 0  # training rows the steps ran (an epoch's short last batch counted as it is)

    @property
    def samples_per_second(self) -> float:
        seconds = self.seconds_per_step * self.steps_run
        return self.samples_run / seconds if seconds > 0 else 0.0


def record_metrics(
    history: dict[str, list[dict[str, float]]], metrics: dict[str, float], step: int, prefix: str
) -> None:
    """Append ``metrics`` at ``step`` to ``history`` under ``prefix`` + name."""
    for name, value in metrics.items():
        history.setdefault(f"{prefix}{name}", []).append({"value": float(value), "step": step})
