"""model_deployments.forced: whether a deploy was forced past its validation

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:00:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("model_deployments", schema=None) as batch_op:
        # existing rows were not forced as far as anyone recorded: false, not null
        batch_op.add_column(sa.Column("forced", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("model_deployments", schema=None) as batch_op:
        batch_op.drop_column("forced")
