"""The collector's own state DB: schema, the idempotent store and its write path."""
