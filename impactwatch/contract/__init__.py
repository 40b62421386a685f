"""The metric contract: every metric impactwatch exports, and the words rules and dashboards share.

Foundations: imports nothing else of impactwatch.
"""
