"""Create the items and questions tables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "questions",
        sa.Column("question_code", sa.String(10), primary_key=True),
        sa.Column("category", sa.String(10), nullable=False),
        sa.Column("message", sa.String(100), nullable=False),
    )
    op.create_index("ix_questions_category_code", "questions", ["category", "question_code"])


def downgrade() -> None:
    op.drop_table("questions")
    op.drop_table("items")
