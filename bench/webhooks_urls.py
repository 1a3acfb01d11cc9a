"""The URLs of bench/webhooks.py's server: the product's (the Stripe webhook endpoint among
them), plus the baseline: a bare Django view answering 200, behind the same middleware."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as product_urlpatterns

BARE_PATH = "bench/bare-webhook/"


@csrf_exempt
def bare_webhook(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [path(BARE_PATH, bare_webhook, name="bench-bare-webhook"), *product_urlpatterns]
