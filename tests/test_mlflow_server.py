"""A real `mlflow server` on 127.0.0.1: the suite logs a run, its metrics and an artifact to it."""

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from bench.tracking import TrackedRun, client

pytestmark = pytest.mark.slow  # a real mlflow server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    log = tmp_path / "server.log"
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {log.read_text()}") from None
                time.sleep(0.5)
        yield url, tmp_path / "artifacts"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_runs_log_through_an_mlflow_server(mlflow_server, monkeypatch, tmp_path):
    url, artifacts = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    note = tmp_path / "decision.json"
    note.write_text('{"k": 6}')
    with TrackedRun("tests-server", "served", {"seed": 0}, {"pruner": "sls"}) as run:
        run.log_metrics({"test/acc": 0.9, "sls/k": 6})
        run.log_artifact(note)
    stored = client().get_run(run.run_id)
    assert client().tracking_uri == url
    assert stored.info.status == "FINISHED"
    assert stored.data.metrics["sls/k"] == 6 and stored.data.params["seed"] == "0"
    assert [a.path for a in client().list_artifacts(run.run_id)] == ["decision.json"]
    assert list(artifacts.rglob("decision.json"))  # stored by the server, not by the client
