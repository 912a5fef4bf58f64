"""face_classes: each face's class probabilities and age as FLOAT columns, for --where filters.

Filtering the faces.attributes JSON parses every row's JSON; plain columns make a filter a column
comparison. Existing faces are copied from their JSON. The column list is frozen here (the model
in facesearch/index/store.py builds the same list from spec.CLASSES; test_store checks they agree).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CELEBA = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
OTHERS = (
    "male", "female", "age_0_2", "age_3_9", "age_10_19", "age_20_29", "age_30_39", "age_40_49",
    "age_50_59", "age_60_69", "age_70_plus", "white", "black", "asian", "indian", "other",
)
#: attributes key -> column
COLUMNS = {**{name: f"celeba_{name.lower()}" for name in CELEBA},
           **{name: f"p_{name}" for name in OTHERS}, "age": "age"}
_BATCH = 5000


def upgrade() -> None:
    table = op.create_table(
        "face_classes",
        sa.Column("face_id", sa.Integer(), nullable=False),
        *(sa.Column(column, sa.Float(), nullable=True) for column in COLUMNS.values()),
        sa.ForeignKeyConstraint(["face_id"], ["faces.id"], name="fk_face_classes_face_id_faces",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("face_id", name="pk_face_classes"),
    )
    faces = sa.table("faces", sa.column("id", sa.Integer), sa.column("attributes", sa.Text))
    connection = op.get_bind()
    rows = connection.execute(sa.select(faces.c.id, faces.c.attributes).order_by(faces.c.id)).fetchall()
    for start in range(0, len(rows), _BATCH):
        batch = []
        for face_id, attributes in rows[start:start + _BATCH]:
            values = json.loads(attributes) if isinstance(attributes, str) else (attributes or {})
            batch.append({"face_id": face_id, **{column: float(values[name]) for name, column in COLUMNS.items()
                                                 if isinstance(values.get(name), (int, float))}})
        # every row names every column, so one executemany fits them all
        op.bulk_insert(table, [{column: row.get(column) for column in ("face_id", *COLUMNS.values())}
                               for row in batch])


def downgrade() -> None:
    op.drop_table("face_classes")
