"""Render the pages a user browses in a headless Chromium and say what each shows.

The GX Data Docs (``data/08_reporting/data_docs``: GX's index, a validation page and the overview page),
the MLflow experiment ``r2ec`` and its latest run's page and metric charts (``mlflow ui`` on the project's
store) and ``kedro viz build``'s static site: each is loaded with its JavaScript run to completion (the metric
charts, drawn from many fetches after load, in real time through Chromium's DevTools protocol), its rendered DOM
searched for what the page must show, and a screenshot saved. Needs a Chromium (``apt install chromium``; not a
project dependency) and a project that has run ``make run``. Prints one table row per page; exits 1 if a page lacks
what it must show.

    python benchmarks/render_pages.py [--project .] [--out docs/img]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from _common import print_measures  # benchmarks/_common.py (the script's folder is on sys.path)

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        sys.exit(f"no headless browser found (looked for {', '.join(BROWSERS)}): apt install chromium")
    return found


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--disable-background-networking",  # the closed network refuses Chromium's own connections otherwise
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1400,900",
)


def render(url: str, screenshot: Path, wait_ms: int) -> str:
    """The DOM after ``wait_ms`` of virtual time (scripts and fetches done), and a 1400×900 screenshot."""
    flags = [browser(), *CHROMIUM_FLAGS, f"--virtual-time-budget={wait_ms}"]
    subprocess.run([*flags, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=120)
    return subprocess.run([*flags, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120).stdout


def render_live(url: str, screenshot: Path, seconds: float, done: str | None = None, height: int = 900) -> str:
    """The DOM and a 1400×``height`` screenshot of a page left to run in real time (DevTools protocol).

    Pages that draw from many fetches after load (MLflow's metric charts) are not finished when Chromium's
    virtual time runs out; this waits up to ``seconds`` of wall time, or until ``done`` shows in the page.
    """
    from websockets.sync.client import connect  # with kedro-viz (its uvicorn[standard]), a dev dependency

    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        command = [browser(), *CHROMIUM_FLAGS, f"--remote-debugging-port={port}", f"--user-data-dir={profile}"]
        chromium = subprocess.Popen([*command, "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            page = _first_page(f"http://127.0.0.1:{port}/json/list")
            with connect(page["webSocketDebuggerUrl"], max_size=None) as socket_:
                call = _devtools_caller(socket_)
                call("Emulation.setDeviceMetricsOverride", width=1400, height=height, deviceScaleFactor=1, mobile=False)
                call("Page.navigate", url=url)

                def dom() -> str:
                    return call("Runtime.evaluate", expression="document.documentElement.outerHTML")["result"]["value"]

                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    time.sleep(2)
                    if done is not None and done in visible_text(dom()):
                        time.sleep(2)  # the charts that found their data draw in the next frames
                        break
                html = dom()
                screenshot.write_bytes(base64.b64decode(call("Page.captureScreenshot", format="png")["data"]))
                return html
        finally:
            chromium.terminate()
            chromium.wait(timeout=30)


def _first_page(listing: str) -> dict:
    for _ in range(60):
        with contextlib.suppress(OSError):
            pages = [t for t in json.load(urllib.request.urlopen(listing, timeout=2)) if t.get("type") == "page"]
            if pages:
                return pages[0]
        time.sleep(0.5)
    raise RuntimeError(f"Chromium's DevTools did not list a page at {listing}")


def _devtools_caller(socket_):
    """``call(method, **params)``: one DevTools command and its result (events in between are skipped)."""
    ids = iter(range(1, 1_000_000))

    def call(method: str, **params):
        request = next(ids)
        socket_.send(json.dumps({"id": request, "method": method, "params": params}))
        while True:
            message = json.loads(socket_.recv(timeout=60))
            if message.get("id") == request:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    return call


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], url: str, cwd: Path) -> Iterator[None]:
    """Run a server until ``url`` answers; stop it afterwards."""
    server = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=2)
                break
            time.sleep(1)
        else:
            raise RuntimeError(f"{' '.join(command)} did not answer at {url}")
        yield
    finally:
        server.terminate()
        server.wait(timeout=30)


def visible_text(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"(?s)<(script|style)[^>]*>.*?</\1>", " ", dom)))


def check(name: str, dom: str, expected: list[str]) -> tuple[str, str, bool]:
    """(page, what its rendered text holds, whether every expected string is shown)."""
    text = visible_text(dom)
    missing = [item for item in expected if item not in text]
    found = f"{len(expected) - len(missing)}/{len(expected)} expected strings ({', '.join(expected)})"
    return name, f"{len(text):,} visible characters; {found}" + (f"; MISSING {missing}" if missing else ""), not missing


def data_docs(project: Path, out: Path) -> list[tuple[str, str, bool]]:
    """GX's index (its tables are drawn by scripts from CDNs: offline, headings only), the interactions
    validation page (static) and the project's overview page (static, every rule)."""
    docs = project / "data/08_reporting/data_docs"
    page = next(docs.glob("validations/interactions/**/*.html"))
    return [
        check(
            "GX Data Docs index",
            render((docs / "index.html").as_uri(), out / "gx_index.png", 5_000),
            ["Validation Results", "Expectation Suites"],
        ),
        check(
            "GX validation page (interactions)",
            render(page.as_uri(), out / "gx_validation.png", 5_000),
            ["Expectation Validation Result", "Succeeded", "rating_within_scale", "item_exists_in_items"],
        ),
        check(
            "Data validation overview",
            render((docs / "overview.html").as_uri(), out / "gx_overview.png", 2_000),
            ["every rule held", "item_exists_in_items", "user_has_min_interactions"],
        ),
    ]


def mlflow_pages(project: Path, out: Path) -> list[tuple[str, str, bool]]:
    """The ``r2ec`` experiment (its training runs) and the latest run's page and Model metrics tab (its curves).

    MLflow 3's UI opens experiments in its GenAI view unless the browser chose "Model training" before;
    ``?workflowType=machine_learning`` (the link ``make mlflow-ui`` prints) opens the runs.
    """
    import mlflow

    store = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    [run] = mlflow.search_runs(
        experiment_names=["r2ec"], max_results=1, order_by=["start_time DESC"], output_format="list"
    )
    port = free_port()
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "mlflow"), "ui", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", str(port)]
    experiment = f"http://127.0.0.1:{port}/#/experiments/{run.info.experiment_id}"
    training = "?workflowType=machine_learning"
    with serving(command, f"http://127.0.0.1:{port}/health", project):
        runs = render(experiment + training, out / "mlflow_experiment.png", 20_000)
        page = render(f"{experiment}/runs/{run.info.run_id}{training}", out / "mlflow_run.png", 20_000)
        charts = render_live(
            f"{experiment}/runs/{run.info.run_id}/model-metrics{training}",
            out / "mlflow_curves.png",
            90,
            "train.completion_length",
            1300,
        )
    return [
        check("MLflow experiment r2ec", runs, ["Runs", run.info.run_name]),
        check("MLflow run page", page, [run.info.run_name, "git_commit", "data_hash"]),
        check(
            "MLflow run: Model metrics",
            charts,
            ["recpo (", "sasrec (", "sft (", "train.completion_length", "Model metrics ("],
        ),
    ]


def kedro_viz_site(project: Path, out: Path) -> list[tuple[str, str, bool]]:
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "kedro"), "viz", "build"], cwd=project, check=True, capture_output=True, timeout=600)
    port = free_port()
    with serving(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        f"http://127.0.0.1:{port}/",
        project / "build",
    ):
        dom = render(f"http://127.0.0.1:{port}/", out / "kedro_viz.png", 20_000)
    return [check("kedro viz build", dom, ["__default__", "model_input", "build_dual_head", "register_model"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    project, out = args.project.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = [row for pages in (data_docs, mlflow_pages, kedro_viz_site) for row in pages(project, out)]
    print_measures([(name, shown) for name, shown, _ in rows])
    print(f"screenshots: {out}")
    sys.exit(0 if all(ok for *_, ok in rows) else 1)


if __name__ == "__main__":
    main()
