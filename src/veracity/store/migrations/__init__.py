"""Alembic migrations of the results store (applied by ``veracity db upgrade``)."""
