"""GET /metrics: this web process's Prometheus metrics, for Prometheus to scrape (README "Metrics and logs").

Off (404) unless METRICS_ENABLED; with METRICS_TOKEN set, only for `Authorization: Bearer <token>`
(401 otherwise). The Celery queue depths are read from the broker as the page is built.
"""

import hmac

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from apps.core.metrics import queue_depths_install


def _token_given(request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())


@require_GET
def metrics(request):
    if not settings.METRICS_ENABLED:
        raise Http404("Metrics are off (METRICS_ENABLED).")
    if settings.METRICS_TOKEN and not _token_given(request):
        response = HttpResponse("Metrics need `Authorization: Bearer <METRICS_TOKEN>`.\n", status=401)
        response["Content-Type"] = "text/plain; charset=utf-8"
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    queue_depths_install(settings.CELERY_BROKER_URL)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(REGISTRY), content_type=content_type)
