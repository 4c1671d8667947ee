"""The ablation grid's structure: one variant at a time, models handed over without copies."""

from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog

from r2ec_pipeline.config import ABLATION_VARIANTS
from r2ec_pipeline.pipelines.ablations.pipeline import create_pipeline
from tests.conftest import PROJECT_ROOT


def test_each_variant_finishes_before_the_next_one_starts():
    order = [node.name for node in create_pipeline().nodes]
    variants = list(ABLATION_VARIANTS)
    for earlier, later in zip(variants, variants[1:], strict=False):
        last_of_earlier = max(i for i, name in enumerate(order) if name.startswith(f"{earlier}."))
        assert last_of_earlier < order.index(f"{later}.start_policy"), (earlier, later)


def test_variant_models_pass_between_nodes_without_copies():
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base")
    catalog = DataCatalog.from_config(loader["catalog"])
    for name in ("rank_only.initial_model", "rank_only.recpo_model"):
        assert catalog.get(name)._copy_mode == "assign", name
