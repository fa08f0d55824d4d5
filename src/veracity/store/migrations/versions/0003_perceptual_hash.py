"""The perceptual hash of each image prediction ("seen before").

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("perceptual_hash", sa.String(64), nullable=True))
        batch.create_index("ix_predictions_perceptual_hash", ["perceptual_hash"])


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_index("ix_predictions_perceptual_hash")
        batch.drop_column("perceptual_hash")
