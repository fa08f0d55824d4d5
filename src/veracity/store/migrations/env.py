"""Alembic's environment: migrations run on the connection the caller opened
(veracity.store.database.upgrade_database); there is no alembic.ini."""

from alembic import context

from veracity.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `veracity db upgrade`, not the alembic command")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot alter columns in place: Alembic copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
