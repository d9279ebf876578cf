"""uvicorn's httptools protocol with bounds on reading a request, and problems rather than plain text for bad HTTP.

httptools buffers a request's line and header fields whole, with no limit, before the app sees any of
them: one 5 MB header field was read into a worker's memory and answered 200, and nothing stopped
a larger one. uvicorn's h11 protocol has a bound (`h11_max_incomplete_event_size`), but costs more per
request; this subclass applies the same setting to httptools by counting the bytes fed to the parser
until the head is complete, answering 431 (RFC 6585) once they exceed it and closing the connection.
Requests the parser refuses (a malformed line, a NUL in a header, an unknown method) get the same
`application/problem+json` shape as every other error, with a request id, instead of uvicorn's text.

Nor does uvicorn bound the time a request takes to arrive: its keep-alive timeout covers only an idle
connection between requests, so a head that never ends, or a body shorter than its Content-Length, held
the connection open for good (600 of them, a worker's file descriptors for the asking). Here a request's
head must be complete within `head_timeout` seconds (APP_REQUEST_HEAD_TIMEOUT_SECONDS) of its first
bytes, or of the connection's start for the first request: else 408 and the connection closed. Its body
may pause at most `body_timeout` seconds (APP_REQUEST_BODY_TIMEOUT_SECONDS) while the server is ready to
read more: else the connection is closed, after a 408 if no answer has begun, and the app's `receive()`
gets `http.disconnect`, so nothing is written. Neither bound covers the answer: a long poll whose request
is complete runs its course, and an idle connection between requests closes by uvicorn's keep-alive
timeout. Each costs a timer per request only when the request spans several reads (one per connection
for its start); progress through a body is a clock reading, not a new timer.

What it relies on of uvicorn 0.54's `HttpToolsProtocol` (docs/library-internals.md lists it):
`data_received`, `connection_made`, `connection_lost`, the parser callbacks `on_message_begin`, `on_url`,
`on_header`, `on_headers_complete` and `on_message_complete`, `send_400_response` (called when a callback
raises), `transport`, `loop`, `cycle` (its `response_started`, `response_complete`, `keep_alive`,
`disconnected`, `message_event`, `waiting_for_100_continue`) and `pipeline`; and on the server calling
the `http` class with keyword arguments only, so serve.py can pass a `functools.partial` of it.
`tests/unit/test_server_protocol.py` fails if they move.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from observability.request_ids import new_request_id
from rest.problems import PROBLEM_MEDIA_TYPE, problem_json

logger = logging.getLogger("uvicorn.error")

DEFAULT_MAX_HEAD_BYTES = 64 * 1024
DEFAULT_HEAD_TIMEOUT_SECONDS = 10.0
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0


class HeadTooLarge(Exception):
    """Raised from the parser's callbacks when the request head grows past the bound."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with the request head bounded by uvicorn's `h11_max_incomplete_event_size`, and the time to read a request bounded."""

    def __init__(
        self,
        *args,
        head_timeout: float = DEFAULT_HEAD_TIMEOUT_SECONDS,
        body_timeout: float = DEFAULT_BODY_TIMEOUT_SECONDS,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._max_head_bytes = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self._head_bytes = 0  # the URL and header fields parsed so far, exactly
        self._unparsed_head_bytes = 0  # what the parser holds of a head not yet complete
        self._reading_head = True
        self._head_too_large = False
        self._head_timeout = head_timeout
        self._body_timeout = body_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._head_begun = False  # a request's first bytes parsed, its head not yet complete
        self._reading_body = False  # a request's head complete, its body not yet
        self._body_progress = 0.0  # loop time of the last read while a body was being read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        # The first request's head is due within the head timeout of the connection's start (nothing bounds
        # a connection that never sends a byte otherwise); later ones within it of their first bytes.
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        reading_head = self._reading_head
        super().data_received(data)
        if self.transport.is_closing():
            return
        if reading_head and self._reading_head:
            # Still no complete header field: the parser buffers it whole, so a field that never ends is
            # bounded here, to within one read.
            self._unparsed_head_bytes += len(data)
            if self._unparsed_head_bytes > self._max_head_bytes:
                self._refuse_head()
                return
        if self._reading_body:
            self._body_progress = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self._body_timeout, self._body_stalled)
        elif self._head_timer is None and (self._head_begun or not self._answering()):
            # Part of a head; or bytes that begin no request (CRLFs, the rest of a body answered before it
            # ended) on an idle connection, which cancelled uvicorn's keep-alive timer without a new one.
            self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_begun = True
        self._head_bytes = self._unparsed_head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_begun = False
        self._reading_body = True
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def _answering(self) -> bool:
        """Whether a request read on this connection still waits for (the end of) its answer."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._head_begun:
            self.transport.close()  # idle, nothing of a request sent: closed as uvicorn's keep-alive timeout does
        elif self._answering():
            # A pipelined request's head is late while an earlier one is answered: a 408 now would land inside
            # that answer, so the connection closes after the last answer instead.
            self.cycle.keep_alive = False
        else:
            logger.warning("Request head not complete within %g s; answered 408.", self._head_timeout)
            self._send_problem(
                408, "Request Timeout",
                f"The request line and header fields did not arrive within {self._head_timeout:g} seconds, "
                "the limit (APP_REQUEST_HEAD_TIMEOUT_SECONDS).",
            )

    def _body_stalled(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or not self._reading_body:
            return
        now = self.loop.time()
        if not self.transport.is_reading() or self.cycle.waiting_for_100_continue:
            # Reading paused until the app takes what is buffered, or the client waits for "100 Continue":
            # the wait is the server's, not the client's.
            self._body_progress = now
        idle = now - self._body_progress
        if idle < self._body_timeout:
            self._body_timer = self.loop.call_later(self._body_timeout - idle, self._body_stalled)
            return
        logger.warning("Request body stalled for %g s; connection closed.", self._body_timeout)
        cycle = self.cycle
        # Queued behind an earlier request (pipelined), or answered already: nothing more can be written.
        answer = not self.pipeline and not cycle.response_started
        # The app's receive() returns http.disconnect from now on, and anything it sends is dropped, as when the
        # client goes away (uvicorn's connection_lost): its transaction rolls back.
        cycle.disconnected = True
        cycle.message_event.set()
        if answer:
            self._send_problem(
                408, "Request Timeout",
                f"The request body paused for more than {self._body_timeout:g} seconds, "
                "the limit (APP_REQUEST_BODY_TIMEOUT_SECONDS).",
            )
        else:
            self.transport.close()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._max_head_bytes:
            self._head_too_large = True
            raise HeadTooLarge  # httptools stops parsing; uvicorn answers through send_400_response

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse_head()
        else:
            self._send_problem(400, "Bad Request", msg)

    def _refuse_head(self) -> None:
        if self.transport.is_closing():
            return
        logger.warning("Request head over %d bytes; answered 431.", self._max_head_bytes)
        self._send_problem(
            431, "Request Header Fields Too Large",
            f"The request line and header fields exceed {self._max_head_bytes} bytes, the limit (APP_MAX_HEADER_BYTES).",
        )

    def _send_problem(self, status: int, title: str, detail: str) -> None:
        request_id = new_request_id()
        body = problem_json(status, title, detail, request_id=request_id)
        head = [f"HTTP/1.1 {status} {title}".encode("ascii")]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [
            b"content-type: " + PROBLEM_MEDIA_TYPE.encode("ascii"),
            b"content-length: " + str(len(body)).encode("ascii"),
            b"x-request-id: " + request_id.encode("ascii"),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()
