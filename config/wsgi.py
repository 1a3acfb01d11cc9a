"""WSGI entry point (the ASGI one in asgi.py is what `web` runs; this serves plain-HTTP deployments)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()
