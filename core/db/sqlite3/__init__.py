"""Django's SQLite backend with a connection pool for the ASGI web process (see base.py)."""
