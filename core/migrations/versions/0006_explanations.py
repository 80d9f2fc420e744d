"""explanations: worded, faithfulness-checked explanations of stored predictions

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    op.create_table(
        "explanations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("prediction_id", sa.String(32), sa.ForeignKey("predictions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_id", sa.String(32), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("llm_model", sa.String(200), nullable=False),
        sa.Column("prompt_version", sa.String(40), nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("result", json_type, nullable=False),
        sa.Column("facts", json_type, nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_explanations_cache", "explanations", ["cache_key", "created_at"])
    op.create_index("ix_explanations_prediction", "explanations", ["prediction_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_explanations_prediction", table_name="explanations")
    op.drop_index("ix_explanations_cache", table_name="explanations")
    op.drop_table("explanations")
