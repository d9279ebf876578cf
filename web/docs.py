"""The docs' routes in front of Connexion: Swagger UI and the spec at the root too, the OpenAPI and AsyncAPI documents as written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import orjson
import yaml
from connexion.json_schema import ExtendedSafeLoader
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send


class RootDocsAliases:
    """Serve the API's Swagger UI and spec at the root as well (`/ui/`, `/openapi.json`, `/openapi.yaml`)."""

    def __init__(self, app: ASGIApp, *, base_path: str) -> None:
        self.app = app
        self.base_path = base_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/":
                await RedirectResponse("/ui/")(scope, receive, send)
                return
            if path in ("/openapi.json", "/openapi.yaml", "/ui") or path.startswith("/ui/"):
                aliased = self.base_path + path
                scope = {**scope, "path": aliased, "raw_path": aliased.encode()}
        await self.app(scope, receive, send)


# The OAuth2 scheme's token URL as the file holds it; the served document names APP_OAUTH_TOKEN_URL instead.
TOKEN_URL_PLACEHOLDER = "https://issuer.example/oauth2/token"


class AuthoredSpec:
    """Serve the OpenAPI document as written at `{base_path}/openapi.json` and `/openapi.yaml`.

    Connexion 3.3 serves its resolved copy instead: every `$ref` inlined (about 150 KB here) and the
    keys sorted, so a client generator pointed at the URL names its types after paths rather than
    `Room` or `Problem` (connexion issue #2127, PR #2128 open). Here the YAML is the file itself and
    the JSON the same document with its components, `$ref`s and key order kept. Behind a proxy that
    sets the ASGI `root_path`, `servers` names the prefixed base path, as Connexion's copy does. With
    `token_url` (APP_OAUTH_TOKEN_URL), the OAuth2 flow's `tokenUrl` names it instead of the placeholder,
    so that Swagger UI and generated clients know where to get a token.
    """

    def __init__(self, app: ASGIApp, *, spec_path: Path, base_path: str, token_url: str | None = None) -> None:
        self.app = app
        self.base_path = base_path
        self._yaml_text = spec_path.read_text(encoding="utf-8")
        if token_url is not None:
            placeholder = f"tokenUrl: {TOKEN_URL_PLACEHOLDER}\n"
            if placeholder not in self._yaml_text:
                raise RuntimeError(f"{spec_path} no longer holds `{placeholder.strip()}` for APP_OAUTH_TOKEN_URL to replace")
            # A JSON string is a YAML double-quoted scalar: the URL is quoted whatever it holds.
            self._yaml_text = self._yaml_text.replace(placeholder, f"tokenUrl: {orjson.dumps(token_url).decode()}\n")
        self._document = yaml.load(self._yaml_text, ExtendedSafeLoader)
        self._json = orjson.dumps(self._document, default=str)
        self._routes = {f"{base_path}/openapi.json": self._json_response, f"{base_path}/openapi.yaml": self._yaml_response}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        await route(scope.get("root_path", "").rstrip("/"))(scope, receive, send)

    def _with_prefix(self, root_path: str) -> dict:
        return {**self._document, "servers": [{"url": root_path + self.base_path}]}

    def _json_response(self, root_path: str) -> Response:
        content = orjson.dumps(self._with_prefix(root_path), default=str) if root_path else self._json
        return Response(content, media_type="application/json")

    def _yaml_response(self, root_path: str) -> Response:
        if root_path:
            content = yaml.safe_dump(self._with_prefix(root_path), sort_keys=False, allow_unicode=True)
        else:
            content = self._yaml_text
        return Response(content, media_type="text/yaml")


class AuthoredAsyncApi:
    """Serve the events' AsyncAPI document as written at `/asyncapi.yaml` and `/asyncapi.json` (also under
    the base path), and the files its relative `$ref`s name, at the URLs those references resolve to.

    The message payload refers to `../schemas/roomservice.Event.avsc`: read from `/v1/asyncapi.yaml` (or
    `/asyncapi.yaml`) that is `/schemas/roomservice.Event.avsc`, served here as the file itself, so the
    document resolves the same from the repository and from the service, with one copy of the schema.
    """

    def __init__(self, app: ASGIApp, *, document_path: Path, base_path: str) -> None:
        self.app = app
        yaml_text = document_path.read_text(encoding="utf-8")
        document = yaml.safe_load(yaml_text)
        json_text = orjson.dumps(document)
        self._routes: dict[str, Response] = {}
        for prefix in ("", base_path):
            self._routes[f"{prefix}/asyncapi.yaml"] = Response(yaml_text, media_type="text/yaml")
            self._routes[f"{prefix}/asyncapi.json"] = Response(json_text, media_type="application/json")
            for reference in _file_references(document):
                referenced = (document_path.parent / reference).resolve()
                content = referenced.read_bytes()
                # A referenced .avsc is JSON; say so, so that clients parse it whatever its extension.
                self._routes[urljoin(f"{prefix}/asyncapi.yaml", reference)] = Response(content, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if response is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def _file_references(node) -> Iterator[str]:
    """Every `$ref` in the document that names another file (a relative path without a fragment)."""
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and not reference.startswith("#") and "://" not in reference:
            yield reference.split("#", 1)[0]
        for value in node.values():
            yield from _file_references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _file_references(value)
