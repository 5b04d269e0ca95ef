"""Alembic environment and revisions of the cloud schema (packaged with the code)."""
