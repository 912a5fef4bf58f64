"""A real photo library: vectors kept in SQL, one photo under several paths.

- face_vectors.vector: the face's vector in that space as little-endian float16 bytes (2 bytes a
  dimension). SQL is the source of truth for vectors; the FAISS files are a cache rebuilt from
  it. Rows of indexes made before are NULL here: the first open after the upgrade fills them in
  from the FAISS file (index.repair.backfill_vectors), so nothing already indexed is lost.
- photos.partial: the file is truncated and was read as far as it goes (its faces are those in
  the part that is there).
- photo_aliases: other paths at which the same content (same SHA-256) lives: a copy, a hard
  link, a second link. One photo, one set of faces, several paths.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("face_vectors") as batch:
        batch.add_column(sa.Column("vector", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("partial", sa.Boolean(), nullable=True))
    op.create_table(
        "photo_aliases",
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["photo_id"], ["photos.id"], name="fk_photo_aliases_photo_id_photos",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("path", name="pk_photo_aliases"),
    )
    op.create_index("ix_photo_aliases_photo_id", "photo_aliases", ["photo_id"])


def downgrade() -> None:
    op.drop_index("ix_photo_aliases_photo_id", "photo_aliases")
    op.drop_table("photo_aliases")
    with op.batch_alter_table("face_vectors") as batch:
        batch.drop_column("vector")
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("partial")
