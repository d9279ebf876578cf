"""Observability: request ids, telemetry and the access log, logs, Prometheus metrics, readiness."""
