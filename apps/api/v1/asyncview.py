"""DRF views whose handlers are coroutines, for the endpoints that wait on a turn.

DRF's views are synchronous: a turn's reply, seconds long, would hold a thread, and a client that
goes away could not stop it. Here Django runs the view on the event loop (it cancels the view's
task when the client disconnects) and DRF's authentication, permissions and throttles run once,
off the loop, before the handler. Errors take the same path as in any DRF view.
"""

import inspect

from asgiref.sync import sync_to_async
from rest_framework.views import APIView


class AsyncAPIView(APIView):
    """An APIView whose `get`/`post`/... may be `async def` (sync ones still work)."""

    view_is_async = True  # Django marks as_view()'s function a coroutine function

    async def dispatch(self, request, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            await sync_to_async(self.initial)(request, *args, **kwargs)
            method = request.method.lower()
            handler = getattr(self, method, None) if method in self.http_method_names else None
            response = (handler or self.http_method_not_allowed)(request, *args, **kwargs)
            if inspect.isawaitable(response):
                response = await response
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response
