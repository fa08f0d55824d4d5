"""The models' desired state, shared by the replicas: its revisions, and what each replica
applied.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from veracity.store.schema import Document, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_revisions",
        sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("document", Document, nullable=False),
    )
    op.create_table(
        "replicas",
        sa.Column("replica_id", sa.String(200), primary_key=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
        sa.Column("applied_revision", sa.Integer, nullable=False),
        sa.Column("failed_revision", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("serving", Document, nullable=False),
    )
    op.create_index("ix_replicas_seen_at", "replicas", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_replicas_seen_at", table_name="replicas")
    op.drop_table("replicas")
    op.drop_table("model_revisions")
