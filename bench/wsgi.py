"""WSGI entry point of the bench server (bench/tracking.py under `web`): the product's
application, whose URLconf is the product's plus the bare baseline route (bench/urls.py)."""

from django.conf import settings

from config.wsgi import application

# Before the first request: the resolver reads ROOT_URLCONF per request and caches by its value.
settings.ROOT_URLCONF = "bench.urls"

__all__ = ["application"]
