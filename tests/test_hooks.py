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


def test_the_runner_tag_is_the_runners_class_name():
    from kedro.runner import SequentialRunner

    from r2ec_pipeline.hooks import runner_name

    assert runner_name(SequentialRunner()) == "SequentialRunner"
    assert runner_name("ParallelRunner") == "ParallelRunner" and runner_name(None) == "SequentialRunner"
    assert runner_name("None") == "SequentialRunner"  # what Kedro 1.7 passes for the default runner
    assert runner_name("<kedro.runner.sequential_runner.SequentialRunner object at 0x7f>") == "SequentialRunner"
