"""Video: media kinds, tracks and frame times.

- photos.media: "photo" or "video" (NULL: a photo, rows from before this revision);
  photos.duration: a video's length in seconds (NULL for photos).
- faces.track_id, track_start, track_end, frame_time, track_frames: a video face is one track
  (pipeline.tracking: one person followed across frames), described from its best frames; its
  id within the video (1, 2, ... by start), when it is first and last seen and the time of the
  best frame (the one its box and thumbnail come from), in seconds from the video's first frame,
  and how many sampled frames it was found in. NULL for photo faces.

Nothing is backfilled: photos stay photos, and videos (found but not indexed before) are indexed
by the next `facesearch index`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FACE_COLUMNS = (("track_id", sa.Integer()), ("track_start", sa.Float()), ("track_end", sa.Float()),
                ("frame_time", sa.Float()), ("track_frames", sa.Integer()))


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("media", sa.String(8), nullable=True))
        batch.add_column(sa.Column("duration", sa.Float(), nullable=True))
    with op.batch_alter_table("faces") as batch:
        for name, kind in FACE_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("faces") as batch:
        for name, _ in reversed(FACE_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("duration")
        batch.drop_column("media")
