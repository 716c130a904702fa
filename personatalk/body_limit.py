"""A request body limit inside Daphne, before any body byte is kept.

Daphne (Twisted) receives a request's whole body before the application runs, then queues all of
it, in 8 KB messages, in memory: an 85 MB upload grew the process by 80 MB before Django's own
checks could see it (and Twisted parsed multipart bodies in memory on top: 25 MB grew it by 280 MB). This caps bodies where Twisted receives them: past DATA_UPLOAD_MAX_MEMORY_SIZE
(declared by Content-Length or counted while a chunked body arrives) the rest is read and dropped,
and the request is answered 413 without running the application. Installed by personatalk/asgi.py,
which the daphne command imports before it serves.
"""

import json

_DROP_AFTER = 4  # a client still sending after this many times the limit is cut off


def daphne_body_limit_install(max_bytes: int) -> bool:
    """Cap Daphne's request bodies at `max_bytes`; False when Daphne is not installed (nothing to do)."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:
        return False
    if getattr(WebRequest, "body_limit", None) is not None:  # installed already: only the limit changes
        WebRequest.body_limit = max_bytes
        return True
    got_length, content_chunk, process = WebRequest.gotLength, WebRequest.handleContentChunk, WebRequest.process
    WebRequest.body_limit = max_bytes

    def gotLength(self, length):  # Twisted's name
        self.body_seen, self.body_refused = 0, length is not None and length > self.body_limit
        # Twisted would parse form and multipart bodies into `args` in memory (a 25 MB upload grew
        # Daphne by 280 MB); Daphne never reads them, Django parses the body itself.
        self._parsePOSTFormSubmission = False
        got_length(self, length)

    def handleContentChunk(self, data):  # Twisted's name
        self.body_seen += len(data)
        if self.body_seen > self.body_limit:
            self.body_refused = True
        if not self.body_refused:
            content_chunk(self, data)
        elif self.body_seen > _DROP_AFTER * self.body_limit:
            self.channel.transport.loseConnection()

    def refusing_process(self):
        if not getattr(self, "body_refused", False):
            return process(self)
        message = f"Request bodies are limited to {self.body_limit} bytes."
        code = "audio_too_large" if self.path.startswith(b"/api/asr") else "request_too_large"
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        self.setResponseCode(413)
        self.responseHeaders.setRawHeaders(b"content-type", [b"application/json"])
        self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        self.setHeader(b"content-length", str(len(body)).encode())
        self.write(body)
        self.finish()
        return None

    WebRequest.gotLength = gotLength
    WebRequest.handleContentChunk = handleContentChunk
    WebRequest.process = refusing_process
    return True
