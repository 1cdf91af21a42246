"""The multi-machine recipe for real: an `mlflow server` over PostgreSQL and four sweeps racing
over the same cells. Every cell ends FINISHED exactly once, and the tables built from the server
equal those built from the same runs in SQLite.

Needs Debian's `postgresql` (initdb, pg_ctl) and psycopg; skipped with the reason otherwise,
except where SLSBENCH_REQUIRE_POSTGRES=1 (CI), where a missing server fails."""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from bench.tables.runs import tidy_runs
from bench.tables.write import build_tables
from bench.tracking import TrackedRun
from tests.conftest import TINY_VIT

pytestmark = pytest.mark.slow  # a PostgreSQL server and four sweep processes

ROOT = Path(__file__).resolve().parent.parent
SUITE = "tests-postgres"


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _missing() -> str:
    if _postgres_bin() is None:
        return "PostgreSQL server binaries not found (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1's driver for postgresql://)
    except ImportError:
        return "psycopg not installed (pip install -e '.[server]')"
    return ""


if _missing():
    if os.environ.get("SLSBENCH_REQUIRE_POSTGRES"):
        raise RuntimeError(f"SLSBENCH_REQUIRE_POSTGRES is set but {_missing()}")
    pytest.skip(_missing(), allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="module")
def postgres_uri():
    # not under pytest's tmp folders: they are private to root, and the server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="slsbench-postgres-"))
    data, bin_dir, port = root / "data", _postgres_bin(), _free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    run = lambda *a: subprocess.run(_as_postgres([str(bin_dir / a[0]), *a[1:]]), check=True,  # noqa: E731
                                    capture_output=True, text=True)  # fmt: skip
    run("initdb", "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8")
    run("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "start",
        "-o", f"-p {port} -h 127.0.0.1 -k {root}")  # fmt: skip
    try:
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow")
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres_uri, tmp_path_factory):
    artifacts, port = tmp_path_factory.mktemp("pg-artifacts"), _free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres_uri,
               "--artifacts-destination", str(artifacts), "--host", "127.0.0.1",
               "--port", str(port), "--workers", "2"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(480):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the mlflow server on PostgreSQL did not come up in 240 s")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


SWEEP = ["sweep", "--preset", "demo-random", "--tasks", "digits", "--methods", "none,retrained,random_blocks",
         "--seeds", "0,1", "--budget", "keep:2", "--suite", SUITE, "--no-progress",
         f"--set=model.kwargs={json.dumps(TINY_VIT)}", "--set=train.epochs=1",
         "--set=train.warmup_epochs=0", "--set=measure.warmup_iters=1",
         "--set=measure.timed_iters=2", "--set=measure.rounds=1", "--set=measure.batch_sizes=1,8",
         "--set=measure.ratio_target=none"]  # fmt: skip


@pytest.fixture
def restore_tracking(monkeypatch):
    """mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI: put both back afterwards, or every
    later test of the session would talk to this module's server once it is gone."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", os.environ["MLFLOW_TRACKING_URI"])
    yield
    mlflow.set_tracking_uri(None)


def test_four_racing_sweeps_finish_every_cell_exactly_once(
    mlflow_server, tmp_path, restore_tracking
):
    import mlflow

    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "OMP_NUM_THREADS": "1",
           "SLSBENCH_RESULTS": str(tmp_path / "results"), "SLSBENCH_CACHE": str(tmp_path / "cache")}  # fmt: skip
    workers = [subprocess.Popen([sys.executable, "-m", "bench", *SWEEP], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(4)]  # fmt: skip
    logs = [w.communicate(timeout=900)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * 4, "\n".join(logs)

    mlflow.set_tracking_uri(mlflow_server)
    raw = mlflow.search_runs(experiment_names=[SUITE], output_format="pandas", max_results=1000)
    raw = raw[raw["tags.pruner"].notna()]
    assert set(raw["status"]) == {"FINISHED"}, raw[["status", "tags.error"]]
    assert len(raw) == 6 and raw["tags.cell.key"].nunique() == 6  # 2 seeds x 3 methods, once
    finished_now = sum(int(log.split(" finished now")[0].rsplit(": ", 1)[1])
                       for log in logs if " finished now" in log)  # fmt: skip
    assert finished_now == 6

    sqlite_runs = _copy_to_sqlite(raw, tmp_path)
    server_tables, sqlite_tables = tmp_path / "server", tmp_path / "sqlite"
    build_tables(tidy_runs(raw), server_tables)
    build_tables(tidy_runs(sqlite_runs), sqlite_tables)
    for name in ("accuracy.md", "efficiency.md"):
        assert (server_tables / name).read_text() == (sqlite_tables / name).read_text()


def _copy_to_sqlite(raw: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    """The same runs logged into a fresh SQLite store, read back the same way."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'copy.db'}"
    saved = os.environ["MLFLOW_TRACKING_URI"]
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        for _, row in raw.iterrows():
            params = {c[7:]: v for c, v in row.items() if c.startswith("params.") and pd.notna(v)}
            tags = {c[5:]: v for c, v in row.items()
                    if c.startswith("tags.") and not c.startswith("tags.mlflow.") and pd.notna(v)}  # fmt: skip
            metrics = {c[8:]: v for c, v in row.items() if c.startswith("metrics.") and pd.notna(v)}
            with TrackedRun(SUITE, "copy", params, tags, heartbeat=None) as run:
                run.log_metrics(metrics)
        mlflow.set_tracking_uri(uri)
        return mlflow.search_runs(experiment_names=[SUITE], output_format="pandas")
    finally:
        os.environ["MLFLOW_TRACKING_URI"] = saved
