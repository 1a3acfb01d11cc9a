"""ASGI entry point: HTTP (API, admin, SSE) and WebSocket routing through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Each ASGI request runs its sync code in a new thread: a pool of open connections (psycopg's on
# Postgres, core/db/sqlite3 on SQLite) instead of one per request. DB_POOL=0 turns it off.
# Set for the settings only, so processes this one starts (tests start workers) don't inherit it.
_pool_default = "DB_POOL" not in os.environ
if _pool_default:
    os.environ["DB_POOL"] = "1"

# Django must be set up before anything imports models (the routing below does).
django_asgi_app = get_asgi_application()
if _pool_default:
    del os.environ["DB_POOL"]

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
