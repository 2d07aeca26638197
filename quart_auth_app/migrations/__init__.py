"""Alembic migrations, shipped inside the package; `quart_auth_app.schema` runs them."""
