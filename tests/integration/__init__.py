"""Integration tier: the app in process on real SQLite and PostgreSQL (and RabbitMQ for the relay)."""
