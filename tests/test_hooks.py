"""Project hooks that need no Kedro session: DVC runs only the environments dvc.yaml tracks."""

import pytest

from r2ec_pipeline.hooks import refuse_untracked_environment


@pytest.mark.parametrize("env", [None, "base", "local"])
def test_dvc_stages_run_in_the_tracked_environments(env):
    refuse_untracked_environment("sft", env)


@pytest.mark.parametrize("env", ["paper", "learn"])
def test_dvc_stages_refuse_other_environments_and_say_how_to_run_them(env):
    with pytest.raises(RuntimeError, match=f"kedro run --env {env}"):
        refuse_untracked_environment("sft", env)


def test_outside_dvc_every_environment_runs():
    refuse_untracked_environment(None, "paper")
