"""Connexion's routing, kept from answering 500 for a path parameter Python cannot convert."""

from __future__ import annotations

from connexion.frameworks.starlette import IntegerConverter
from starlette.convertors import register_url_convertor
from starlette.types import ASGIApp


class TextBeyondIntLimit(IntegerConverter):
    """Connexion's `int` path convertor, passing on as text the digits `int()` refuses to convert.

    `int()` refuses more than 4,300 digits (`sys.get_int_max_str_digits()`), and the router would answer
    that ValueError with a 500. As text, the value fails the parameter's `type: integer` like any other
    non-integer: the same 400 on `path.<name>` as 20 digits get from its `maximum`.
    """

    def convert(self, value: str) -> int | str:
        try:
            return int(value)
        except ValueError:
            return value


def integer_path_parameters(app: ASGIApp) -> ASGIApp:
    """Register the `int` convertor of Connexion's routes in Connexion's stead, and return `app` unwrapped.

    Placed in front of RoutingMiddleware: Connexion builds its stack from the innermost middleware out, so
    this runs after RoutingMiddleware's constructor registers Connexion's convertor, and before the routes
    are added (and their convertors looked up) by name (docs/library-internals.md).
    """
    register_url_convertor("int", TextBeyondIntLimit())
    return app
