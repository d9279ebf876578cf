"""The ASGI → WSGI bridge in front of the Flask app: one hand-off to a worker thread and one back per request."""

from __future__ import annotations

import asyncio
import contextvars
import io
import typing as t
from concurrent.futures import Executor

from a2wsgi.wsgi import build_environ
from starlette.types import Receive, Scope, Send

WSGIApp = t.Callable[[dict, t.Callable], t.Iterable[bytes]]
Response = tuple[int, list[tuple[bytes, bytes]], list[bytes]]


class BufferedWSGIBridge:
    """Serve a WSGI app to ASGI with the request body read up front and the response collected in the thread.

    Connexion's FlaskApp runs Flask behind a2wsgi's `WSGIMiddleware`, which streams both ways: the
    thread reads the body and sends the status line, every chunk and the end of the body each through
    `run_coroutine_threadsafe`, a round trip to the event loop that waits for it. For an API whose
    bodies are bounded (`APP_MAX_BODY_BYTES`; Connexion's validation has read them already) and whose
    responses are built whole, one hand-off each way does the same job; the measured gain is in
    bench/RESULTS.md. The WSGI app runs in `executor` (`APP_THREADS` threads), in a copy of the caller's
    context, as a2wsgi runs it. `app` can be wrapped like a2wsgi's (Connexion's `add_wsgi_middleware`).
    """

    def __init__(self, app: WSGIApp, executor: Executor) -> None:
        self.app = app
        self.executor = executor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # Connexion's middleware answers the lifespan; this app speaks no websockets.
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before it finished sending
        environ = build_environ(t.cast(t.Any, scope), t.cast(t.Any, io.BytesIO(body)))
        call: t.Callable[..., Response] = contextvars.copy_context().run
        status, headers, chunks = await asyncio.get_running_loop().run_in_executor(
            self.executor, call, self._respond, environ
        )
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"".join(chunks)})

    def _respond(self, environ: dict) -> Response:
        chunks: list[bytes] = []
        started: list[t.Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: t.Any = None) -> t.Callable:
            if exc_info is not None:
                # Nothing has been sent yet, so the error can still become the answer upstream.
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [
                int(status.split(" ", 1)[0]),
                [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers],
            ]
            return chunks.append

        iterable = self.app(environ, start_response)
        try:
            chunks.extend(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        status, headers = started
        return status, headers, chunks


async def _read_body(receive: Receive) -> bytes | None:
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)
