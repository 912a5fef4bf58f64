"""Initial schema: photos, faces, index_meta.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "photos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_photos"),
        sa.UniqueConstraint("path", name="uq_photos_path"),
    )
    op.create_index("ix_photos_content_hash", "photos", ["content_hash"])
    op.create_table(
        "faces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("face_index", sa.Integer(), nullable=False),
        sa.Column("x0", sa.Float(), nullable=False),
        sa.Column("y0", sa.Float(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("landmarks", sa.JSON(), nullable=False),
        sa.Column("det_score", sa.Float(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("vector_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["photo_id"], ["photos.id"], name="fk_faces_photo_id_photos", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_faces"),
        sa.UniqueConstraint("photo_id", "face_index", name="uq_faces_photo_id_face_index"),
    )
    op.create_index("ix_faces_photo_id", "faces", ["photo_id"])
    op.create_index("ix_faces_vector_id", "faces", ["vector_id"], unique=True)
    op.create_table(
        "index_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_index_meta"),
    )


def downgrade() -> None:
    op.drop_table("index_meta")
    op.drop_index("ix_faces_vector_id", table_name="faces")
    op.drop_index("ix_faces_photo_id", table_name="faces")
    op.drop_table("faces")
    op.drop_index("ix_photos_content_hash", table_name="photos")
    op.drop_table("photos")
