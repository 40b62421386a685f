"""What runs cost: pricing (pure), history, per-DAG tracking, reconciliation with the AWS bill."""
