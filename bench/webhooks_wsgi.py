"""WSGI entry point of bench/webhooks.py's server under `web`: the product's application, whose
URLconf is the product's plus the bare baseline view (bench/webhooks_urls.py)."""

from django.conf import settings

from config.wsgi import application

# Before the first request: the resolver reads ROOT_URLCONF per request and caches by its value.
settings.ROOT_URLCONF = "bench.webhooks_urls"

__all__ = ["application"]
