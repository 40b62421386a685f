"""In-memory business state and its Prometheus exposition."""
