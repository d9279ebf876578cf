"""Record each room's stored size, so a page of rooms is bounded in bytes without reading the large ones whole.

A room's long fields (description, image URLs, url) may add up to about 800 KB; a search reads those of the
rooms it keeps only once it knows their sizes (providers/sql_rooms.py, APP_MAX_PAGE_BYTES). Rows written
before this revision are measured here; a replica of the previous release still writes 0, which only means
its rooms are read whole, as before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rooms") as batch:
        batch.add_column(sa.Column("stored_bytes", sa.Integer(), nullable=False, server_default="0"))
    # Bytes in UTF-8 (a room of emoji takes four times its characters); SQLite before 3.43 has no octet_length.
    if op.get_bind().dialect.name == "postgresql":
        size = "octet_length(url) + octet_length(description) + octet_length(CAST(images AS TEXT))"
    else:
        size = "length(CAST(url AS BLOB)) + length(CAST(description AS BLOB)) + length(CAST(images AS BLOB))"
    op.execute(f"UPDATE rooms SET stored_bytes = {size}")


def downgrade() -> None:
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("stored_bytes")
