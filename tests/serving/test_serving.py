"""`mlflow models serve -m models:/r2ec@champion --env-manager local` on loopback: one good request, three bad."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port
from tests.serving.conftest import log_and_register


def _post(url: str, records: list[dict]) -> tuple[int, dict]:
    body = json.dumps({"dataframe_records": records}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def server(mlflow_store, tiny_checkpoint, tiny_backbone_dir, tmp_path: Path):
    log_and_register(tiny_checkpoint, tiny_backbone_dir, 0.1)
    port = free_port()
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [
            mlflow_cli,
            "models",
            "serve",
            "-m",
            "models:/r2ec@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        # the venv's bin first: `mlflow models serve` execs `uvicorn` from PATH (pytest run outside make)
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": mlflow_store,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield f"{base}/invocations"
    finally:
        with contextlib.suppress(ProcessLookupError):  # a server that never started has no group left
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def test_served_champion_answers_a_good_request_and_rejects_bad_ones_with_400(server):
    status, body = _post(
        server,
        [{"history_item_ids": ["B01", "B02"], "history_ratings": [5.0, 2.0], "history_timestamps": [100, 200], "k": 2}],
    )
    assert status == 200, body
    [answer] = body["predictions"]
    assert len(answer["item_ids"]) == 2 and not set(answer["item_ids"]) & {"B01", "B02"}
    assert len(answer["titles"]) == len(answer["scores"]) == 2 and "reasoning" in answer

    for record, message in (
        ({"history_item_ids": ["B01", "NOPE"]}, "unknown item ids ['NOPE']"),
        ({"history_item_ids": []}, "history_item_ids is empty"),
        ({"history_item_ids": ["B01"], "k": 0}, "k must be an integer in 1..3"),
    ):
        status, body = _post(server, [record])
        assert status == 400, (record, body)
        assert message in body["message"], body
