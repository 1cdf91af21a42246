"""Every query of the MLflow store: a suite's runs, the controls of a transfer, SLS's k, the runs
of a sweep cell. `bench.tracking` writes; this module reads. Names come from `bench.record`."""

from __future__ import annotations

from collections.abc import Iterator

from bench import record as R
from bench.tracking import client

NEWEST_FIRST = ["attributes.start_time DESC"]
CONTROLS = ("none", "retrained")


def runs_of(experiment_id: str, query: str = "", store=None) -> Iterator:
    """Every run of an experiment matching `query`, newest first, page by page."""
    store = store or client()
    token = None
    while True:
        page = store.search_runs([experiment_id], query, max_results=1000, page_token=token,
                                 order_by=NEWEST_FIRST)  # fmt: skip
        yield from page
        token = page.token
        if not token:
            return


def experiment_id_of(name: str, store=None) -> str | None:
    experiment = (store or client()).get_experiment_by_name(name)
    return experiment.experiment_id if experiment else None


def control_accuracies(store, experiment_id: str, transfer_key: str, eval_split: str) -> dict:
    """`test/acc` of the newest FINISHED `none` and `retrained` runs on this transfer, if any."""
    found = {}
    for control in CONTROLS:
        query = R.all_of(R.tag_is(R.TRANSFER_KEY, transfer_key), R.tag_is(R.PRUNER, control),
                         R.status_is("FINISHED"), R.param_is(R.P_EVAL_SPLIT, eval_split))  # fmt: skip
        runs = store.search_runs([experiment_id], query, max_results=1, order_by=NEWEST_FIRST)
        if runs and R.ACC in runs[0].data.metrics:
            found[control] = runs[0].data.metrics[R.ACC]
    return found


def finished_sls_runs(query: str) -> list:
    """FINISHED sls runs (any experiment) that logged a k, newest first."""
    store = client()
    experiments = [e.experiment_id for e in store.search_experiments()]
    query = R.all_of(R.tag_is(R.PRUNER, "sls"), R.status_is("FINISHED"), query)
    runs = store.search_runs(experiments, query, order_by=NEWEST_FIRST)
    return [r for r in runs if R.SLS_K in r.data.metrics]


def same_settings(run, settings: dict) -> bool:
    """Whether a run's logged pruner settings are `settings`."""
    params = run.data.params
    return all(params.get(f"{R.PRUNER_SETTING_PREFIX}{n}") == str(v) for n, v in settings.items())


def sls_k_of_transfer(transfer_key: str, settings: dict) -> int | None:
    """k of the newest FINISHED sls run on this transfer with these SLS settings, if any."""
    for found in finished_sls_runs(R.tag_is(R.TRANSFER_KEY, transfer_key)):
        if same_settings(found, settings):
            return int(found.data.metrics[R.SLS_K])
    return None


def sls_ks_of_suite(suite: str, petl: str, eval_split: str, settings: dict) -> dict:
    """SLS's k per (task, seed) of a suite: the newest finished run of this PETL method, these SLS
    settings and this evaluation split."""
    query = R.all_of(R.tag_is(R.PETL, petl), R.param_is(R.P_EVAL_SPLIT, eval_split))
    store, ks = client(), {}
    for found in finished_sls_runs(query):
        experiment = store.get_experiment(found.info.experiment_id).name
        cell = (found.data.tags.get(R.TASK), found.data.params.get(R.P_SEED))
        if experiment == suite and same_settings(found, settings):
            ks.setdefault(cell, int(found.data.metrics[R.SLS_K]))
    return ks


def runs_of_cell(run_id: str, cell_key: str) -> list:
    """The RUNNING and FINISHED runs of a sweep cell, in the experiment of `run_id`."""
    store = client()
    experiment = store.get_run(run_id).info.experiment_id
    runs = store.search_runs([experiment], R.tag_is(R.CELL_KEY, cell_key), max_results=1000)
    return [r for r in runs if r.info.status in ("RUNNING", "FINISHED")]
