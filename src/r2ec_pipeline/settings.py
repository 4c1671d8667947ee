"""Kedro project settings: hooks and the configuration loader.

kedro-mlflow registers its own hooks through its entry point (one MLflow run per ``kedro run``);
``ParameterValidationHooks`` checks every parameter block before any node runs;
``DistributedRunHooks`` lets only rank 0 of a multi-process launch write outputs, and for the other
ranks kedro-mlflow is turned off; ``RunTagsHooks`` names the MLflow run and tags it (dataset, profile,
commit, data hash, evaluation users).
"""

import os

from kedro.config import OmegaConfigLoader

from r2ec_pipeline.hooks import (
    DistributedRunHooks,
    ParameterValidationHooks,
    RunTagsHooks,
    process_rank,
)

HOOKS = (ParameterValidationHooks(), DistributedRunHooks(), RunTagsHooks())
if process_rank() > 0:
    DISABLE_HOOKS_FOR_PLUGINS = ("kedro-mlflow", "kedro_mlflow")  # the distribution name, either spelling

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
    # a profile (conf/gpu, conf/learn, conf/paper) lists only the parameters it changes: soft merge keeps
    # every other key of a block from conf/base
    "merge_strategy": {"parameters": "soft"},
    # ${env:NAME,default}: lets MLFLOW_TRACKING_URI point the runs at a server without editing YAML.
    "custom_resolvers": {"env": lambda name, default=None: os.environ.get(name, default)},
}
