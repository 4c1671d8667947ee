"""Kedro dataset for a stage's per-step metrics, logged to MLflow as ``<section>/<name>``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kedro.io import DatasetError
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset

MetricPoints = list[dict[str, float]] | dict[str, float]


class CurvesDataset(MlflowMetricsHistoryDataset):
    """A stage's metric history (``{name: [{"value", "step"}]}``) logged as ``<section>/<name>``.

    The MLflow run page groups metric charts by the part of the name before its first ``/`` and shows those
    sections before the ungrouped metrics: each stage's curves (``sft/train.loss``, ``recpo/valid.direct.ndcg_at_10``)
    open the page, the evaluation's single values (``eval.*``, bars) follow. kedro-mlflow's own ``prefix``
    joins with a dot, which the UI does not group by. The section is kept as the prefix too: kedro-mlflow's
    hook replaces every metrics dataset without one by its own, prefixed with the dataset's name.
    """

    def __init__(self, section: str, run_id: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        if not section or "/" in section:
            raise ValueError(f"a metric section is a non-empty name without '/', got {section!r}")
        super().__init__(run_id=run_id, prefix=section, metadata=metadata)

    def _build_args_list_from_metric_item(self, key: str, value: MetricPoints) -> Iterator[tuple[str, float, int]]:
        points = [value] if isinstance(value, dict) else value
        if not isinstance(points, list) or not points:
            raise DatasetError(f"metric {key!r}: expected a point or a non-empty list of points, got {value!r}")
        return ((f"{self._prefix}/{key}", point["value"], point["step"]) for point in points)

    def _is_dataset_metric(self, key: str) -> bool:
        return key.startswith(f"{self._prefix}/")

    def _load(self) -> dict[str, MetricPoints]:
        mark = len(self._prefix) + 1
        return {name[mark:]: points for name, points in super()._load().items()}
