"""uvicorn's httptools protocol with a bound on the request head, and problems rather than plain text for bad HTTP.

httptools buffers a request's line and header fields whole, with no limit, before the app sees any of
them: one 5 MB header field was read into a worker's memory and answered 200, and nothing stopped
a larger one. uvicorn's h11 protocol has a bound (`h11_max_incomplete_event_size`), but costs more per
request; this subclass applies the same setting to httptools by counting the bytes fed to the parser
until the head is complete, answering 431 (RFC 6585) once they exceed it and closing the connection.
Requests the parser refuses (a malformed line, a NUL in a header, an unknown method) get the same
`application/problem+json` shape as every other error, with a request id, instead of uvicorn's text.

What it relies on of uvicorn 0.54's `HttpToolsProtocol` (docs/library-internals.md lists it):
`data_received`, the parser callbacks `on_message_begin`, `on_url`, `on_header` and `on_headers_complete`,
`send_400_response` (called when a callback raises), and `transport`; `tests/unit/test_server_protocol.py`
fails if they move.
"""

from __future__ import annotations

import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from observability.request_ids import new_request_id
from rest.problems import PROBLEM_MEDIA_TYPE, problem_json

logger = logging.getLogger("uvicorn.error")

DEFAULT_MAX_HEAD_BYTES = 64 * 1024


class HeadTooLarge(Exception):
    """Raised from the parser's callbacks when the request head grows past the bound."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with the request head bounded by uvicorn's `h11_max_incomplete_event_size`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._max_head_bytes = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self._head_bytes = 0  # the URL and header fields parsed so far, exactly
        self._unparsed_head_bytes = 0  # what the parser holds of a head not yet complete
        self._reading_head = True
        self._head_too_large = False

    def data_received(self, data: bytes) -> None:
        reading_head = self._reading_head
        super().data_received(data)
        if reading_head and self._reading_head and not self.transport.is_closing():
            # Still no complete header field: the parser buffers it whole, so a field that never ends is
            # bounded here, to within one read.
            self._unparsed_head_bytes += len(data)
            if self._unparsed_head_bytes > self._max_head_bytes:
                self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_bytes = self._unparsed_head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()

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
