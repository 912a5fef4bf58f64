"""People: faces grouped into persons (index.people).

- persons: a person's id (kept for good: re-indexing never renumbers), the name a user gave it
  (NULL until named) and its centroid (the mean of its faces' identity vectors, unit norm, as
  float16 bytes like face_vectors.vector), which keeps the person when all its faces are
  described again.
- faces.person_id: the person a face belongs to (NULL: none yet); faces.person_locked: a user took
  the face out of its person, so it is never assigned automatically again.

Indexes made before have no persons: the next `facesearch index` groups their faces (nothing
else changes; index_meta "people_grouped" records that it was done).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "persons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("centroid", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_persons"),
    )
    op.create_index("ix_persons_name", "persons", ["name"])
    with op.batch_alter_table("faces") as batch:
        batch.add_column(sa.Column("person_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("person_locked", sa.Boolean(), nullable=True))
        batch.create_foreign_key("fk_faces_person_id_persons", "persons", ["person_id"], ["id"],
                                 ondelete="SET NULL")
        batch.create_index("ix_faces_person_id", ["person_id"])


def downgrade() -> None:
    # index.people.GROUPED: without persons the index is not grouped any more
    op.execute("DELETE FROM index_meta WHERE key = 'people_grouped'")
    with op.batch_alter_table("faces") as batch:
        batch.drop_index("ix_faces_person_id")
        batch.drop_constraint("fk_faces_person_id_persons", type_="foreignkey")
        batch.drop_column("person_locked")
        batch.drop_column("person_id")
    op.drop_index("ix_persons_name", "persons")
    op.drop_table("persons")
