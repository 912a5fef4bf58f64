"""face_classes: columns for emotions, pixel attributes and the face's quality record.

- p_angry ... p_neutral: the 7 FER-2013 expressions (spec.EMOTIONS), probabilities 0..1.
- p_hair_long, p_hair_short, p_hair_red, p_eyes_blue, p_eyes_green, p_eyes_brown: attributes
  measured from the face's pixels under its region masks (spec.PIXEL_ATTRIBUTES).
- quality (0..1), face_size (px), border_cut (0..1), blur (Laplacian variance): the quality
  record of pipeline/detect/quality.py (spec.QUALITY_KEYS).

All nullable: faces indexed before have none of them until they are described again. The column
list is frozen here (the model in facesearch/index/store.py builds it from spec.STORED_KEYS;
test_store checks they agree).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "p_angry", "p_disgust", "p_fear", "p_happy", "p_sad", "p_surprise", "p_neutral",
    "p_hair_long", "p_hair_short", "p_hair_red", "p_eyes_blue", "p_eyes_green", "p_eyes_brown",
    "quality", "face_size", "border_cut", "blur",
)


def upgrade() -> None:
    with op.batch_alter_table("face_classes") as batch:
        for column in COLUMNS:
            batch.add_column(sa.Column(column, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("face_classes") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
