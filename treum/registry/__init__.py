"""The model registry: SQLAlchemy schema, Alembic migrations, lifecycle API, artifacts, audit log."""
