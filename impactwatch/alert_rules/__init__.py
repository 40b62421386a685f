"""Prometheus rule and Alertmanager config generation from the catalog.

Pure generation (no I/O): `settings` (every threshold and interval, one model), `promql`
(selectors, durations, template snippets), `rules_model` (alert names, recording rules),
`freshness`, `pipelines`, `platform` (the rule groups), `render` (YAML, runbook URLs),
`alertmanager_config`, `prometheus_config`, `runbooks`, and `generate` (the whole tree).
I/O: `writer` (files), `promtool` (promtool check/test), `cli` (`impactwatch rules`).
"""
