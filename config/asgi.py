"""ASGI entry point: HTTP (API, admin, SSE) and WebSocket routing through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The web process's settings (DB_POOL: psycopg's pool on Postgres, the statement timeout; DB_POOL=0
# turns them off). Each ASGI request runs its sync code in a new thread, which would never reuse a
# persistent connection: on SQLite each request connects (CONN_MAX_AGE 0). Set for the settings
# only, so processes this one starts (tests start workers) don't inherit them.
_defaults = {"DB_POOL": "1", "DB_CONN_MAX_AGE": "0"}
_defaults = {name: value for name, value in _defaults.items() if name not in os.environ}
os.environ.update(_defaults)

# Django must be set up before anything imports models (the routing below does).
django_asgi_app = get_asgi_application()
for _name in _defaults:
    del os.environ[_name]

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from core.realtime.auth import realtime_auth_stack  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Every socket needs a ticket or a session, and a browser an allowed Origin (docs/realtime.md).
        "websocket": realtime_auth_stack(URLRouter(websocket_urlpatterns)),
    }
)
