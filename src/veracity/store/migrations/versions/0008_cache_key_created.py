"""The exact cache's index on (cache_key, created_at) instead of cache_key alone: a key's
latest answer is read from the index's end, however many rows repeated uploads added under
the same key (on PostgreSQL the lookup had been planned as a scan of the key's whole table
of predictions, its cost growing with the table).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_predictions_cache_key_created", "predictions", ["cache_key", "created_at"])
    op.drop_index("ix_predictions_cache_key", table_name="predictions")


def downgrade() -> None:
    op.create_index("ix_predictions_cache_key", "predictions", ["cache_key"])
    op.drop_index("ix_predictions_cache_key_created", table_name="predictions")
