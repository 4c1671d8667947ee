"""Bad parameters fail with a message naming the parameter."""

import pytest

from r2ec_pipeline.config import (
    ABLATION_VARIANTS,
    ConfigError,
    parse_block,
    validate_parameters,
)


def _params(**overrides):
    params = {
        "data_ingestion": {},
        "data_validation": {},
        "prompts": {},
        "model": {"backbone": "x"},
        "sft": {},
        "recpo": {},
        "baselines": {},
        "evaluation": {},
        "registration": {},
        "catalog_update": {},
        "cold_start": {},
        "ablations": {"variants": {name: {} for name in ABLATION_VARIANTS}},
    }
    for block, values in overrides.items():
        params[block] = values
    return params


def test_defaults_are_valid():
    typed = validate_parameters(_params())
    assert typed["prompts"].window_size == 5  # the CPU profile; conf/paper: 20
    assert typed["prompts"].split == "leave_one_out"
    assert typed["data_ingestion"].source == "movielens_100k"


@pytest.mark.parametrize(
    ("block", "values", "named"),
    [
        ("data_ingestion", {"source": "netflix"}, "data_ingestion.source"),
        ("prompts", {"split": "random"}, "prompts.split"),
        ("prompts", {"window_size": 0}, "prompts.window_size"),
        ("prompts", {"windowsize": 5}, "prompts.windowsize"),
        ("prompts", {"temporal_ratios": [0.5, 0.2, 0.2]}, "temporal_ratios"),
        ("data_validation", {"rating_min": 6.0}, "rating_min"),
        ("data_ingestion", {"amazon": {"start_date": "2024-01-01"}}, "start_date"),
        ("model", {"backbone": "x", "similarity_temperature": 0}, "model.similarity_temperature"),
        ("model", {"backbone": "x", "history_mask": "none"}, "model.history_mask"),
        ("sft", {"selection_metric": "ndcg@10"}, "sft.selection_metric"),
        ("sft", {"batch_size": 1}, "sft.batch_size"),
        # RecPO: the issue's bad configs, each named before any node runs
        ("recpo", {"reward_type": "ndcg"}, "recpo.reward_type"),
        ("recpo", {"advantage_type": "ppo"}, "recpo.advantage_type"),
        ("recpo", {"similarity_temperature": 0}, "recpo.similarity_temperature"),
        ("recpo", {"similarity_temperature": -0.1}, "recpo.similarity_temperature"),
        ("recpo", {"num_generations": 1}, "num_generations must be >= 2 with advantage_type 'grpo'"),
        ("recpo", {"reward_beta": 1.5}, "recpo.reward_beta"),
        ("recpo", {"reward_beta": -0.1}, "recpo.reward_beta"),
        ("recpo", {"relabel_topk": 5}, "relabel_topk 5 > num_generations 4"),
        ("recpo", {"loss_type": "dapo"}, "recpo.loss_type"),
        ("recpo", {"num_genrations": 4}, "recpo.num_genrations"),
        # evaluation, baselines, registration
        ("baselines", {"sasrec": {"hidden_size": 63}}, "hidden_size 63 is not divisible by num_heads 2"),
        ("evaluation", {"users": 0}, "evaluation.users"),
        ("evaluation", {"ks": []}, "evaluation.ks"),
        ("registration", {"promotion_metric": "ndcg_at_10"}, "must read valid.mode.metric"),
        ("registration", {"promotion_metric": "valid.recpo.reasoning.mrr"}, "must read valid.mode.metric"),
        ("registration", {"promotion_metric": "test.reasoning.mrr"}, "the test split only reports"),
        ("registration", {"default_k": 20, "max_k": 10}, "default_k 20 > max_k 10"),
        ("ablations", {"variants": {"fused_grpo": {}}}, "variants must be exactly"),
        (
            "ablations",
            {"variants": {**{n: {} for n in ABLATION_VARIANTS}, "rloo": {"advantage_type": "ppo"}}},
            "ablations.variants.rloo.advantage_type",
        ),
    ],
)
def test_bad_values_name_the_parameter(block, values, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate_parameters(_params(**{block: values}))


def test_gradient_checkpointing_with_shared_prefixes_is_refused_naming_both_settings():
    params = _params(
        model={"backbone": "x", "gradient_checkpointing": True}, sft={"engine": "batched", "share_prefix": ["items"]}
    )
    with pytest.raises(ConfigError, match=r"model\.gradient_checkpointing: true cannot run with sft\.share_prefix"):
        validate_parameters(params)
    params["sft"]["share_prefix"] = []  # every text run whole: checkpointing is fine
    assert validate_parameters(params)["model"].gradient_checkpointing


def test_unknown_source_lists_the_choices():
    with pytest.raises(ConfigError, match="movielens_100k") as error:
        parse_block("data_ingestion", {"source": "netflix"})
    assert "'netflix'" in str(error.value)


def test_missing_block_is_named():
    with pytest.raises(ConfigError, match="parameter block 'prompts' is missing"):
        validate_parameters(
            {"data_ingestion": {}, "data_validation": {}, "model": {"backbone": "x"}, "sft": {}, "recpo": {}}
        )


PROFILES = ["paper", "learn", "gpu", "fit"]


def _project_parameters(env: str) -> dict:
    """The parameters a ``kedro run --env <env>`` reads: the project's loader settings (soft merge)."""
    from kedro.config import OmegaConfigLoader

    from r2ec_pipeline.settings import CONFIG_LOADER_ARGS
    from tests.conftest import PROJECT_ROOT

    settings = {**CONFIG_LOADER_ARGS, "default_run_env": env}
    return OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **settings)["parameters"]


def _leaves(tree: dict, path: tuple = ()):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key), value


@pytest.mark.parametrize("env", PROFILES)
def test_a_profile_lists_only_what_it_changes_and_only_keys_base_has(env):
    """Every leaf of conf/<env>/parameters*.yml differs from the value conf/base gives it (its own or the
    typed default) and reaches the merged parameters; soft merge keeps every other key of base."""
    import yaml

    from tests.conftest import PROJECT_ROOT

    base = _project_parameters("base")
    defaults = {name: block.model_dump() for name, block in validate_parameters(base).items()}
    merged = _project_parameters(env)
    for path in sorted((PROJECT_ROOT / "conf" / env).glob("parameters*.yml")):
        for keys, value in _leaves(yaml.safe_load(path.read_text()) or {}):
            name = f"{path.name}: {'.'.join(keys)}"
            assert _at(defaults, keys) != value, f"{name} repeats conf/base's value {value!r}"
            assert _at(merged, keys) == value, f"{name} did not reach the merged parameters"
    for keys, _ in _leaves(base):  # every other key still comes from base
        assert _at(merged, keys) is not _MISSING, f"{'.'.join(keys)} is missing from the merged {env} parameters"


_MISSING = object()


def _at(tree, keys: tuple):
    """The value at ``keys`` (tuples as lists, as YAML writes them), or ``_MISSING``."""
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return _MISSING
        tree = tree[key]
    return list(tree) if isinstance(tree, tuple) else tree


@pytest.mark.parametrize("env", ["base", *PROFILES])
def test_every_shipped_environment_has_valid_parameters(env):
    typed = validate_parameters(_project_parameters(env))
    assert typed["model"].backbone
    if env == "paper":
        assert typed["prompts"].split == "temporal" and typed["model"].adapters.top_layers is None
    if env == "learn":  # the learning profile: selection on >= 300 users with early stopping, every test user
        assert typed["sft"].eval_users >= 300 and typed["sft"].early_stopping_patience
        assert typed["evaluation"].users is None and typed["evaluation"].zero_shot_users is None
        assert typed["evaluation"].reasoning_users is None and typed["evaluation"].recpo_reasoning_users is None
    if env == "fit":  # the RecPO fit check: a fixed set of users, visited again and again, the last weights kept
        recpo = typed["recpo"]
        assert recpo.train_users and recpo.max_steps * recpo.per_device_train_batch_size >= 8 * recpo.train_users
        assert recpo.eval_users == 0 and recpo.metric_for_best_model is None
        # the whole table re-encoded at least once a pass: a revisited user's target is never a fresh row among
        # stale ones (that alone raises the training reward without ranking better; docs/method.md §5.8)
        assert recpo.refresh_every and recpo.refresh_every * recpo.per_device_train_batch_size <= recpo.train_users
    if env == "gpu":  # one epoch of SFT, a few hundred RecPO steps with 256-token reasoning, every user
        sft = typed["sft"]  # a full epoch: the batched engine's epochs, or enough steps
        assert (sft.engine == "batched" and sft.epochs >= 1 and sft.softmax == "full") or (
            sft.steps * sft.batch_size >= 97_171
        )
        assert typed["recpo"].max_steps >= 200
        assert typed["recpo"].max_completion_length == typed["evaluation"].reasoning_tokens == 256
        assert typed["evaluation"].users is None and typed["evaluation"].reasoning_users is None


def test_conf_base_states_exactly_the_typed_defaults():
    """One source of truth: conf/base writes out the typed models' defaults (no drift between the two)."""
    from kedro.config import OmegaConfigLoader

    from tests.conftest import PROJECT_ROOT

    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base")
    for name, block in loader["parameters"].items():
        typed = parse_block(name, block)
        required = {key: getattr(typed, key) for key, field in type(typed).model_fields.items() if field.is_required()}
        assert typed.model_dump() == type(typed)(**required).model_dump(), name


def test_the_fit_check_writes_beside_make_runs_recpo_outputs_never_over_them():
    """conf/fit's RecPO outputs live under their own folders: a fit check leaves `make run`'s model and reports."""
    from kedro.config import OmegaConfigLoader

    from r2ec_pipeline.settings import CONFIG_LOADER_ARGS
    from tests.conftest import PROJECT_ROOT

    def catalog(env: str) -> dict:
        return OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env})[
            "catalog"
        ]

    base, fit = catalog("base"), catalog("fit")
    for name in ("recpo_checkpoints", "recpo_model@model", "recpo_model@folder", "recpo_samples", "recpo_report"):
        where = [str(v) for v in _leaves(fit[name]) if v[0][-1] in ("path", "filepath")]
        assert where and all("fit" in w for w in where) and fit[name] != base[name], name
    assert fit["recpo_history"]["section"] != base["recpo_history"]["section"]
