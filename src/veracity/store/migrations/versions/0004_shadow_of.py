"""Shadow scores: a candidate version's score of an input, beside the serving one's.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("shadow_of", sa.String(80), nullable=True))
        batch.create_index("ix_predictions_shadow_of", ["shadow_of"])


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_index("ix_predictions_shadow_of")
        batch.drop_column("shadow_of")
