"""api_keys.expires_at, and keys of the old catch-all scope 'write' narrowed to 'predict'

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 10:00:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: Union[str, None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# the scopes column as the ORM types it (JSON, JSONB on PostgreSQL), for a portable data migration
_keys = sa.table(
    "api_keys",
    sa.column("name", sa.String(100)),
    sa.column("scopes", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")),
)


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
    # Before scopes were checked every key could do everything and was created with ['write'].
    # Scopes are now checked and the narrowest is the default: such a key keeps 'predict' only;
    # give it more by creating a key with the scopes it needs (treum registry keys create --scope).
    conn = op.get_bind()
    for name, scopes in conn.execute(sa.select(_keys.c.name, _keys.c.scopes)).all():
        if scopes and "write" in scopes:
            narrowed = sorted({"predict", *(s for s in scopes if s != "write")})
            conn.execute(sa.update(_keys).where(_keys.c.name == name).values(scopes=narrowed))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
