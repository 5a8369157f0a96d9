"""model_performance_metrics: the specification's metric column named like a task becomes return_volatility

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 06:00:00

The specification's column (the annualised standard deviation of a strategy's returns) shared its
name with a task. Registries created since carry
``return_volatility`` from the first migration; an older one still has the old name, which
this renames (nothing to do where it is already renamed).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

NEW = "return_volatility"
OLD = NEW.removeprefix("return_")  # the specification's name: the new one less the prefix this migration adds
TABLE = "model_performance_metrics"


def _columns() -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(TABLE)}


def upgrade() -> None:
    if OLD in _columns():
        with op.batch_alter_table(TABLE, schema=None) as batch_op:
            batch_op.alter_column(OLD, new_column_name=NEW)


def downgrade() -> None:
    pass  # the first migration creates return_volatility: there is no older name to go back to
