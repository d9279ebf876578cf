"""HTTP semantics the handlers use, framework-free: conditional requests, negotiation, representation, idempotency, problems."""
