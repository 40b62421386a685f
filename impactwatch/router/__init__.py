"""The escalation router: Alertmanager webhooks in, Slack incidents out."""
