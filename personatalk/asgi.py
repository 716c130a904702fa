"""ASGI entry point: HTTP goes to Django, the conversation socket lives at exactly /ws."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "personatalk.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddleware  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import CookieMiddleware, SessionMiddleware  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from apps.realtime.consumers import ConversationConsumer  # noqa: E402
from personatalk.body_limit import daphne_body_limit_install  # noqa: E402

daphne_body_limit_install(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)  # no body past the largest upload is kept

if settings.TASKS_IN_PROCESS and settings.WARM_MODELS:  # this process runs the jobs: load their models now
    from personatalk.warmup import models_warm

    models_warm()

if settings.TASKS_IN_PROCESS:  # the embedded mode: no beat process, this one runs the periodic jobs
    from workers.dispatch import beat_start

    beat_start()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Cookie auth is resolved here; the consumer itself checks Origin for cookie sockets.
        "websocket": CookieMiddleware(
            SessionMiddleware(AuthMiddleware(URLRouter([path("ws", ConversationConsumer.as_asgi())])))
        ),
    }
)

from personatalk.warmup import heap_freeze  # noqa: E402

heap_freeze()  # last: everything imported and loaded above is start-up heap
