"""photos.model_version: which descriptor model described each photo's faces.

Vectors of two models are not comparable, so after a model upgrade indexing re-describes the
photos of the older model and a query refuses to mix them. Existing photos are stamped with the
model the index recorded (index_meta "model_version").

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("model_version", sa.String(length=64), nullable=True))
    meta = sa.table("index_meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    photos = sa.table("photos", sa.column("model_version", sa.String))
    connection = op.get_bind()
    recorded = connection.scalar(sa.select(meta.c.value).where(meta.c.key == "model_version"))
    if recorded is not None:
        connection.execute(sa.update(photos).values(model_version=recorded))


def downgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("model_version")
