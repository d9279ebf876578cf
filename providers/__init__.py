"""Repositories, one per aggregate: an interface, a SQLAlchemy implementation on the request's connection, an in-memory twin."""
