"""face_vectors: each face's vector id in each named vector space (index.spaces).

Today every face has one vector, in space "master" (faces.vector_id, kept: queries join on it);
a later space (e.g. "identity") adds a row per face. Existing faces are backfilled from
faces.vector_id in one INSERT ... SELECT (SQLite and PostgreSQL).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The space of the vectors faces.vector_id names (index.spaces.MASTER, frozen here).
MASTER = "master"


def upgrade() -> None:
    table = op.create_table(
        "face_vectors",
        sa.Column("face_id", sa.Integer(), nullable=False),
        sa.Column("space", sa.String(length=32), nullable=False),
        sa.Column("vector_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["face_id"], ["faces.id"], name="fk_face_vectors_face_id_faces",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("face_id", "space", name="pk_face_vectors"),
        sa.UniqueConstraint("space", "vector_id", name="uq_face_vectors_space_vector_id"),
    )
    faces = sa.table("faces", sa.column("id", sa.Integer), sa.column("vector_id", sa.BigInteger))
    op.get_bind().execute(table.insert().from_select(
        ["face_id", "space", "vector_id"],
        sa.select(faces.c.id, sa.literal(MASTER, sa.String(32)), faces.c.vector_id)))


def downgrade() -> None:
    op.drop_table("face_vectors")
