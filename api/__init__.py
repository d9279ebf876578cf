"""Handlers named by the spec's operationIds: validated arguments in, provider call, response out."""
