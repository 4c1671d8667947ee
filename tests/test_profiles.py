"""The Kedro-free parameter loader (``config/profile.py``) gives what Kedro's config loader gives, per profile."""

from __future__ import annotations

import pytest
from kedro.config import OmegaConfigLoader

from r2ec_pipeline.config.profile import load_parameters
from r2ec_pipeline.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf"


@pytest.mark.parametrize("env", [None, "gpu", "learn", "paper", "fit"])
def test_each_profile_loads_as_kedro_loads_it(env):
    kedro = OmegaConfigLoader(str(CONF), env=env or "local", **{k: v for k, v in CONFIG_LOADER_ARGS.items()})
    assert load_parameters(CONF, env) == kedro["parameters"]


def test_overrides_apply_last_and_an_unknown_profile_is_named():
    parameters = load_parameters(CONF, "gpu", {"recpo.max_steps": 2, "sft": {"epochs": 0.5}})
    assert parameters["recpo"]["max_steps"] == 2 and parameters["sft"]["epochs"] == 0.5
    assert parameters["sft"]["engine"] == "batched"  # the profile's, under the override
    with pytest.raises(FileNotFoundError, match="no profile 'h100'"):
        load_parameters(CONF, "h100")
