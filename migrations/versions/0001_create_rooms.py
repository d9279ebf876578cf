"""Create the rooms table.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("recurrency", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("monthly_price", sa.BigInteger(), nullable=False),
        sa.Column("property_size", sa.String(100), nullable=False),
        sa.Column("lat", sa.Double(), nullable=False),
        sa.Column("lon", sa.Double(), nullable=False),
        sa.Column("area_name", sa.String(200), nullable=True),
        sa.Column("area_country", sa.String(100), nullable=True),
        sa.Column("area_city", sa.String(100), nullable=True),
        sa.Column("area_lat", sa.Double(), nullable=True),
        sa.Column("area_lon", sa.Double(), nullable=True),
        sa.Column("is_visible", sa.Boolean(), nullable=False),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("url", name="uq_rooms_url"),
    )
    op.create_index("ix_rooms_created_at_id", "rooms", ["created_at", "id"])
    op.create_index("ix_rooms_price_id", "rooms", ["price", "id"])
    op.create_index("ix_rooms_area_city", "rooms", ["area_city"])
    op.create_index("ix_rooms_area_country", "rooms", ["area_country"])
    op.create_index("ix_rooms_provider", "rooms", ["provider"])
    op.create_index("ix_rooms_lat", "rooms", ["lat"])


def downgrade() -> None:
    op.drop_table("rooms")
