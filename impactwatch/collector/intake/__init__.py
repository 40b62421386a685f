"""Listener events over HTTP: `POST /v1/events` parsed at the edge."""
