"""uvicorn's httptools protocol with a bound on the request head, and problems rather than plain text for bad HTTP.

httptools buffers a request's line and header fields whole, with no limit, before the app sees any of
them: one 5 MB header field was read into a worker's memory and answered 200, and nothing stopped
a larger one. uvicorn's h11 protocol has a bound (`h11_max_incomplete_event_size`), but costs more per
request; this subclass applies the same setting to httptools by counting the bytes fed to the parser
until the head is complete, answering 431 (RFC 6585) once they exceed it and closing the connection.
Requests the parser refuses (a malformed line, a NUL in a header, an unknown method) get the same
`application/problem+json` shape as every other error, with a request id, instead of uvicorn's text.

What it relies on of uvicorn 0.54's `HttpToolsProtocol` (docs/library-internals.md lists it):
`data_received`, the parser callbacks `on_message_begin` and `on_headers_complete`, `send_400_response`,
and `transport`; `tests/test_server_protocol.py` fails if they move.
"""

from __future__ import annotations

import logging

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from web.request_ids import new_request_id

logger = logging.getLogger("uvicorn.error")

DEFAULT_MAX_HEAD_BYTES = 64 * 1024


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with the request head bounded by uvicorn's `h11_max_incomplete_event_size`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._max_head_bytes = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self._head_bytes = 0
        self._reading_head = True

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            # Counted before the parser buffers them; a request that begins mid-chunk is counted from its
            # next chunk on, so the bound holds to within one read.
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head_bytes:
                self._refuse_head()
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
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
        body = orjson.dumps(
            {"type": "about:blank", "title": title, "status": status, "detail": detail, "request_id": request_id}
        )
        head = [f"HTTP/1.1 {status} {title}".encode("ascii")]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/problem+json",
            b"content-length: " + str(len(body)).encode("ascii"),
            b"x-request-id: " + request_id.encode("ascii"),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()
