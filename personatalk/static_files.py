"""WhiteNoise as middleware that runs on the event loop too.

WhiteNoise's middleware is synchronous only: under Daphne, Django ran every request's middleware
below it, and the view, in a worker thread, with async views hopped back to the loop from there.
A view that waits (an HTTP turn, seconds long) parked a thread for its whole length, and Django's
in-process async test client (one shared thread) served requests one after another. This subclass
serves static files as WhiteNoise does, off the loop, and passes every other request on as a
coroutine, so async views run on the loop.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, settings=settings):
        super().__init__(get_response, settings)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request):
        if self.autorefresh:  # development: each request looks on disk
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        return await self.get_response(request)
