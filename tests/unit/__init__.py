"""Unit tier: no server and no database; the app on in-memory providers where an app is needed. `make check` runs it."""
