"""Tracking store → pandas → the paper's tables and plots in results/tables/<suite>/, never
edited by hand (`make tables`, `bench.tables.write.write_tables`).

- `catalog.TABLES`: every table, in the page's order; one module each (`accuracy`,
  `best_of_evals`, `reproduction`, `efficiency`, `accuracy_vs_throughput`,
  `accuracy_vs_stored_bytes`, `sls_k`, `sls_scores`, `criteria`, `depth_curve`, `sls_regret`),
  whose `section(runs)` gives its data (`spec.Section`) or None where the runs hold nothing for it;
- helpers, which import nothing from `bench` but `bench.record`: `runs` (the store's runs as one
  row per run), `seeds` (aggregation over seeds, collapsed seeds), `intervals` (the bootstrap
  over tasks and seeds), `formatting`, `files` (`.md`, `.csv`, `.tex`, `.png`), `page`
  (index.html, rendered from the same data), `spec`;
- `vtab`: the VTAB layout (task order, groups) from `bench.tasks`;
- `write`: the orchestrator: runs → every table's files and index.html, logged as artifacts of
  a `tables` run in the suite's experiment.

Only FINISHED runs count; of repeated runs of a (task, PETL, method, budget, seed, evaluation
split, data source) the newest. Data sources are never mixed: where a suite holds runs from more
than one (`data.source`/`data.format`, e.g. folder/jpeg and tfds/tensor), every row, pairing and
curve is per source and labelled with it. The method tables hold runs evaluated on test;
`drop_last` at an explicit `keep:k` is a point of the depth curve and appears there, not as a
method.
"""
