"""Answering queries: `terms` and `descriptions` (what a text can name), `text` (descriptions ->
classes), `ranking` (query vectors, re-ranking by class fit, region weights), `filters` (the
`--where` language), `planner` (THE query path that the API, the evaluation and the benchmarks
share), `hits` (what comes back)."""
