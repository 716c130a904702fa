"""django-prometheus's request middleware, with its hooks run on the event loop under ASGI.

Its hooks only count and time in memory. As plain MiddlewareMixin classes under Daphne, each hook
(before the view, at the view, after it) would hop to Django's one thread for synchronous code, the
thread every socket's ORM calls queue for: a request's bookkeeping would wait behind them. Here they
run where the request is, as under WSGI.
"""

from django_prometheus import middleware


class _OnTheLoop:
    async def __acall__(self, request):
        response = self.process_request(request)
        response = response or await self.get_response(request)
        return self.process_response(request, response)


class PrometheusBeforeMiddleware(_OnTheLoop, middleware.PrometheusBeforeMiddleware):
    """Counts every request and times it through all the middleware (first in MIDDLEWARE)."""


class PrometheusAfterMiddleware(_OnTheLoop, middleware.PrometheusAfterMiddleware):
    """Counts requests and responses by view, method and status, and times the view (last in MIDDLEWARE)."""

    def __init__(self, get_response):
        super().__init__(get_response)
        if self.async_mode:  # Django awaits a coroutine `process_view` as it is, without a thread hop
            count_view = self.process_view

            async def process_view(request, view_func, view_args, view_kwargs):
                return count_view(request, view_func, view_args, view_kwargs)

            self.process_view = process_view
