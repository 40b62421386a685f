"""The collector: catalog, metric contract, metadata-DB poller, event intake and /metrics."""
