"""Stage curves go to MLflow as <section>/<name>: the run page groups them by stage, before single values."""

import mlflow
import pytest
from kedro.io import DataCatalog
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook

from r2ec_pipeline.datasets.curves import CurvesDataset


def test_curves_are_logged_under_their_section_and_load_back_without_it(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    catalog = DataCatalog({"sft_history": CurvesDataset(section="sft")})
    # kedro-mlflow's hook swaps metrics datasets without a prefix for its own: this one must survive it
    MlflowHook().after_catalog_created(catalog, {}, {}, {}, None, {})
    history = {
        "train.loss": [{"value": 2.0, "step": 1}, {"value": 1.5, "step": 2}],
        "run.seconds": [{"value": 9.0, "step": 2}],
    }
    with mlflow.start_run() as run:
        mlflow.log_metric("eval.test.sft.direct.ndcg_at_10", 0.1)  # another dataset's metric: not this one's
        catalog.save("sft_history", history)
        loaded = catalog.load("sft_history")
    client = mlflow.MlflowClient()
    steps = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "sft/train.loss")]
    assert steps == [(1, 2.0), (2, 1.5)]
    logged = set(client.get_run(run.info.run_id).data.metrics)
    assert logged == {"sft/train.loss", "sft/run.seconds", "eval.test.sft.direct.ndcg_at_10"}
    assert loaded == {"train.loss": history["train.loss"], "run.seconds": history["run.seconds"][0]}


@pytest.mark.parametrize("section", ["", "a/b"])
def test_a_section_is_a_name_without_a_slash(section):
    with pytest.raises(ValueError, match="metric section"):
        CurvesDataset(section=section)
