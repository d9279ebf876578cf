"""Add the writer's W3C trace context to the events table (docs/tracing.md): null where tracing was off.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite adds a nullable column in place (no table copy), PostgreSQL runs plain ALTER TABLEs.
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(55), nullable=True))
        batch.add_column(sa.Column("tracestate", sa.String(512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("tracestate")
        batch.drop_column("traceparent")
