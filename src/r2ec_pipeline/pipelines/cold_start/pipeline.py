"""cold_start: newest items held out → the training chain in the ``cold_start`` namespace → a catalog update
adds them → every model ranks the test users whose target is one of them."""

from kedro.pipeline import Node, Pipeline

from r2ec_pipeline.pipelines.cold_start.nodes import (
    add_held_out_items,
    check_held_out_items,
    hold_out_newest_items,
    rank_baselines,
    rank_cold_r2ec,
    rank_known_r2ec,
    select_cold_start_users,
    summarise_cold_start,
)

NAMESPACE = "cold_start"
# What the namespaced training reads from outside it: the backbone (the same for both catalogs).
SHARED_INPUTS = {"backbone_lm", "backbone_tokenizer", "backbone_folder"}


def _trained_without_held_out_items(training: Pipeline) -> Pipeline:
    """``training`` (the stages ``make run`` trains with, from the registry) in the namespace: it reads
    ``cold_start.validated_interactions`` / ``validated_items`` and writes ``cold_start.*``, with the same
    parameters as ``make run``."""
    parameters = {name for name in training.inputs() if name.startswith("params:")}
    shared = SHARED_INPUTS & training.inputs()
    return Pipeline(training, namespace=NAMESPACE, inputs={name: name for name in shared}, parameters=parameters)


def create_pipeline(training: Pipeline | None = None, **kwargs) -> Pipeline:
    """The cold-start evaluation; ``training`` is the chain the held-out split trains (prompts → recpo)."""
    ns = f"{NAMESPACE}."
    common = ["cold_start_samples", "validated_interactions", "validated_items", "params:model", "params:evaluation"]
    nodes = Pipeline(
        [
            Node(
                hold_out_newest_items,
                ["validated_interactions", "validated_items", "params:cold_start"],
                [f"{ns}validated_interactions", f"{ns}validated_items", f"{ns}held_out_items"],
                name="hold_out_newest_items",
            ),
            Node(
                check_held_out_items,
                [f"{ns}held_out_items", f"{ns}validated_items", "params:data_validation"],
                [f"{ns}matched_items", "cold_start_validation", "cold_start_data_docs"],
                name="check_held_out_items",
            ),
            Node(
                add_held_out_items,
                [
                    f"{ns}recpo_model@model",
                    f"{ns}validated_items",
                    "cold_start_validation",
                    f"{ns}matched_items",
                    "params:prompts",
                    "params:model",
                ],
                [f"{ns}updated_model", f"{ns}updated_catalog", f"{ns}update_report"],
                name="add_held_out_items",
            ),
            Node(
                select_cold_start_users,
                ["test_samples", f"{ns}held_out_items"],
                "cold_start_samples",
                name="select_cold_start_users",
            ),
            Node(rank_known_r2ec, ["recpo_model@model", *common], f"{ns}known_rankings", name="rank_known_r2ec"),
            Node(
                rank_cold_r2ec,
                [f"{ns}updated_model", f"{ns}updated_catalog", *common],
                f"{ns}cold_rankings",
                name="rank_cold_r2ec",
            ),
            Node(
                rank_baselines,
                [
                    f"{ns}popularity_counts",
                    f"{ns}sasrec_model",
                    "popularity_counts",
                    "sasrec_model",
                    f"{ns}updated_catalog",
                    *common,
                ],
                f"{ns}baseline_rankings",
                name="rank_baselines",
            ),
            Node(
                summarise_cold_start,
                [
                    f"{ns}known_rankings",
                    f"{ns}cold_rankings",
                    f"{ns}baseline_rankings",
                    f"{ns}update_report",
                    f"{ns}held_out_items",
                    "params:evaluation",
                    "params:cold_start",
                ],
                ["cold_start_report", "cold_start_metrics", "cold_start_rankings"],
                name="summarise_cold_start",
            ),
        ]
    )
    return nodes if training is None else nodes + _trained_without_held_out_items(training)
