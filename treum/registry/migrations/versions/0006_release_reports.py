"""release_reports: each release's report (treum report release=<tag>) as a registry record

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 14:00:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: Union[str, None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "release_reports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("release", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("models", JSON, nullable=False),
        sa.Column("document", JSON, nullable=False),
        sa.Column("html_sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("release"),
    )


def downgrade() -> None:
    op.drop_table("release_reports")
