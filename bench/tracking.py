"""MLflow: where runs go, and one run's params, tags, metrics and artifacts, logged in batches.

Default store: `sqlite:///results/mlflow.db` with artifacts under `results/mlartifacts/`;
`MLFLOW_TRACKING_URI` points it elsewhere (e.g. an `mlflow server` shared by several machines).
A run that raises ends FAILED (KILLED on Ctrl-C) with its error recorded as a tag and artifact
(the whole traceback in `error.txt`; one line for the terminal). While it runs, a daemon thread
sets its `heartbeat` tag every minute, so a sweep on any host can tell a live run from a dead one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from bench import record as R  # noqa: E402
from bench.paths import PROJECT_ROOT, results_dir  # noqa: E402

MAX_PARAM_LENGTH = 6000
BATCH = 100  # MLflow's limit on params per log_batch call
METRIC_BATCH = 1000  # and on metrics
HEARTBEAT_SECONDS = 60.0
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
BLOCK_METRIC = re.compile(r"^(?P<curve>.+)/block_(?P<block>\d+)$")


def one_line(err: BaseException) -> str:
    """`Type: first line of the message`, at most 300 characters: what a terminal shows."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def block_curves(metrics: dict[str, float]) -> dict[str, dict[int, float]]:
    """`<curve>/block_NN` metrics grouped per curve: {curve: {block: value}}, blocks in order."""
    curves: dict[str, dict[int, float]] = {}
    for name, value in metrics.items():
        match = BLOCK_METRIC.match(name)
        if match and value is not None:
            curves.setdefault(match["curve"], {})[int(match["block"])] = float(value)
    return {curve: dict(sorted(values.items())) for curve, values in curves.items()}


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{results_dir() / 'mlflow.db'}"


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")  # runs, not GenAI pages


def runs_table_links(client: MlflowClient, base: str, suite: str) -> str:
    """What `make ui` prints first: the suite's runs table (MLflow 3 opens on a GenAI overview),
    then the other suites'. Marks each experiment as model development, so the UI opens on runs."""
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    lines = []
    for experiment in sorted(experiments, key=lambda e: e.name != suite):
        if experiment.tags.get(EXPERIMENT_KIND[0]) is None:
            client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
        url = f"{base}/#/experiments/{experiment.experiment_id}/runs"
        if experiment.name == suite:
            lines += [f"runs table of suite {suite!r}: {url}",
                      f"  its charts (type test/acc, sls/score in the search box): {url}"
                      "?compareRunsMode=CHART"]  # fmt: skip
        else:
            lines.append(f"  other suite {experiment.name!r}: {url}")
    if not any(e.name == suite for e in experiments):
        lines.insert(0, f"suite {suite!r} has no runs yet (make bench SUITE={suite} ...)")
    return "\n".join(lines)


def get_experiment_id(client: MlflowClient, name: str) -> str:
    """The suite's experiment, created with an explicit artifact location on local stores."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if _is_local(client.tracking_uri):
        location = (results_dir() / "mlartifacts" / name).resolve().as_uri()
    try:
        return client.create_experiment(
            name, artifact_location=location, tags=dict([EXPERIMENT_KIND])
        )
    except MlflowException:  # another process created it in the meantime
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def client() -> MlflowClient:
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def environment_tags() -> dict[str, str]:
    """Git commit and dirty flag, package versions, Python: what makes a run reproducible."""
    tags = {"python": sys.version.split()[0]}
    for package in (
        "torch",
        "timm",
        "scikit-learn",
        "mlflow",
        "torch-pruning",
        "tensorflow-datasets",
    ):
        try:
            tags[f"version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    tags.update(_git_tags())
    return tags


def _git_tags() -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git.commit": commit or "unknown", "git.dirty": str(dirty)}


class Terminated(BaseException):
    """SIGTERM (Slurm's time limit or scancel, `kill`): ends the current run KILLED, like Ctrl-C.

    A BaseException, so the per-method `except Exception` of a run set does not swallow it."""


def raise_on_sigterm() -> None:
    """Turn SIGTERM into `Terminated` in this process (main thread only)."""
    import signal
    import threading

    def handler(signum, frame):
        raise Terminated(f"terminated by signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


class Heartbeat:
    """Sets a run's `heartbeat` tag to the time now and every `interval` seconds, from a daemon
    thread with its own client; a failed beat is skipped, the next one tries again."""

    def __init__(self, run_id: str, interval: float):
        import threading

        self.run_id, self.interval = run_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._send(client())
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        store = client()
        while not self._stop.wait(self.interval):
            self._send(store)

    def _send(self, store: MlflowClient) -> None:
        import time

        try:
            store.set_tag(self.run_id, R.HEARTBEAT, f"{time.time():.3f}")
        except Exception:  # a busy store: the next beat tries again
            pass


class TrackedRun:
    """One MLflow run as a context manager: FINISHED on success, FAILED / KILLED otherwise."""

    def __init__(
        self,
        experiment: str,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        heartbeat: float | None = HEARTBEAT_SECONDS,
    ):
        self.client = client()
        self.experiment_id = experiment_id = get_experiment_id(self.client, experiment)
        run = self.client.create_run(experiment_id, tags=tags, run_name=run_name)
        self.run_id = run.info.run_id
        self.params = params
        self.heartbeat = Heartbeat(self.run_id, heartbeat) if heartbeat else None

    def __enter__(self) -> TrackedRun:
        try:
            self.log_params(self.params)
            if self.heartbeat:
                self.heartbeat.start()
        except BaseException as err:  # e.g. SIGTERM while entering: the run still ends KILLED
            self.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.heartbeat:
            self.heartbeat.stop()
        if exc is None:
            self.client.set_terminated(self.run_id, "FINISHED")
            return False
        status = "KILLED" if isinstance(exc, KeyboardInterrupt | Terminated) else "FAILED"
        message = f"{exc_type.__name__}: {exc}"
        self.client.set_tag(self.run_id, "error", message[:5000])
        self.client.log_text(self.run_id, "".join(traceback.format_exception(exc)), "error.txt")
        self.client.set_terminated(self.run_id, status)
        return False

    def log_params(self, params: dict[str, Any]) -> None:
        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        stamp = _now_ms()
        items = [Metric(k, float(v), stamp, step) for k, v in metrics.items() if v is not None]
        self._log_metric_items(items)

    def log_block_curves(self, metrics: dict[str, float]) -> None:
        """Every `<curve>/block_NN` metric also as one stepped metric `<curve>` (step = block), so
        the MLflow UI draws the per-block curve as one line chart and overlays runs. The flat
        names stay: `mlflow.search_runs` (the tables) returns only a stepped metric's last value."""
        stamp = _now_ms()
        items = [
            Metric(curve, value, stamp, block)
            for curve, values in block_curves(metrics).items()
            for block, value in values.items()
        ]
        self._log_metric_items(items)

    def log_dataset(
        self,
        name: str,
        digest: str,
        source_type: str,
        source: dict,
        profile: dict,
        schema: dict | None = None,
        context: str = "train",
    ) -> None:
        """One MLflow dataset input (the UI's Dataset column), used in `context`."""
        dataset = Dataset(
            name=name,
            digest=digest,
            source_type=source_type,
            source=json.dumps(source),
            schema=json.dumps(schema) if schema else None,
            profile=json.dumps(profile),
        )
        tags = [InputTag("mlflow.data.context", context)]
        self.client.log_inputs(self.run_id, [DatasetInput(dataset, tags)])

    def set_description(self, markdown: str) -> None:
        """The run's description (MLflow's note), shown on the run page and in the runs table."""
        self.client.set_tag(self.run_id, NOTE_TAG, markdown)

    def log_history(self, prefix: str, history: list[dict]) -> None:
        """Per-epoch values as `<prefix>/<name>` with the epoch as step, in one batch."""
        stamp = _now_ms()
        items = [
            Metric(f"{prefix}/{k}", float(v), stamp, record["epoch"])
            for record in history
            for k, v in record.items()
            if k != "epoch"
        ]
        self._log_metric_items(items)

    def _log_metric_items(self, items: list[Metric]) -> None:
        for i in range(0, len(items), METRIC_BATCH):
            self.client.log_batch(self.run_id, metrics=items[i : i + METRIC_BATCH])

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_dict(self, values: dict, name: str) -> None:
        self.client.log_dict(self.run_id, values, name)


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
