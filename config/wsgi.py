"""WSGI entry point: what the `web` process (gunicorn) serves: HTTP, the API, admin and pages.
WebSockets and streamed responses are the `realtime` process's (config/asgi.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The web process, as under config/asgi.py: psycopg's pool on Postgres (gunicorn's threads keep
# their SQLite connections) and the API's statement timeout. Set for the settings only, so
# processes this one starts don't inherit it.
_pool_default = "DB_POOL" not in os.environ
if _pool_default:
    os.environ["DB_POOL"] = "1"

application = get_wsgi_application()
if _pool_default:
    del os.environ["DB_POOL"]
