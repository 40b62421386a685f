"""The contract between impactwatch's parts: what the collector exports and the others read.

- `metrics`: every metric impactwatch exports, its type, labels and help;
- `alerts`: alert names, kinds, severities and the labels alerts carry;
- `promql`: the PromQL vocabulary the rule generator and the dashboards share;
- `thresholds`: the platform limits the alert rules fire at and the dashboards draw.

Foundations: imports nothing else of impactwatch.
"""
