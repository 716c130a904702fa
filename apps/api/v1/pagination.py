"""Pages of the API's lists: numbered pages (`?page=&page_size=`), or a cursor for a session's messages.

Strict about their parameters: a `page_size` or `page` that is not a number in range is a 400
`invalid_field`, not a silent default (a client's bug shows); a page past the last one, or a cursor
this server did not write, is a 404 `not_found`.
"""

from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination

MAX_PAGE_SIZE = 100


def _int_param(request, name: str, *, low: int, high: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: "An integer."}) from None
    if value < low or (high is not None and value > high):
        raise ValidationError({name: f"Within {low}–{high}." if high else f"At least {low}."})
    return value


def _is_datetime(text: str) -> bool:
    try:
        return parse_datetime(text) is not None
    except ValueError:  # well formed, but no such date
        return False


def _int_schema(name: str, description: str, *, low: int, high: int | None) -> dict:
    schema = {"type": "integer", "minimum": low}
    if high is not None:
        schema["maximum"] = high
    return {"name": name, "required": False, "in": "query", "description": description, "schema": schema}


class PagePagination(PageNumberPagination):
    """`{count, next, previous, results}`, 20 a page unless `page_size` (at most 100) says otherwise."""

    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        size = _int_param(request, self.page_size_query_param, low=1, high=self.max_page_size)
        return size if size is not None else self.page_size

    def get_page_number(self, request, paginator):
        number = _int_param(request, self.page_query_param, low=1, high=None)
        return number if number is not None else 1

    def get_schema_operation_parameters(self, view):
        return [
            _int_schema(self.page_query_param, "A page number (1 is the first).", low=1, high=None),
            _int_schema(self.page_size_query_param, "Items on a page.", low=1, high=self.max_page_size),
        ]


class MessageCursorPagination(CursorPagination):
    """A session's messages, oldest first: `{next, previous, results}`; follow `next` for the newer ones."""

    ordering = ("created_at", "id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request):
        size = _int_param(request, self.page_size_query_param, low=1, high=self.max_page_size)
        return size if size is not None else self.page_size

    def decode_cursor(self, request):
        # A cursor is a page's opaque address: one this API did not write names no page (404, as a page
        # number past the last). DRF's own check lets a position that is no time reach the query (a 500).
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None and not _is_datetime(cursor.position):
            raise NotFound(self.invalid_cursor_message)
        return cursor

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Where the page starts: the `next` or `previous` link's cursor.",
                "schema": {"type": "string"},
            },
            _int_schema(self.page_size_query_param, "Messages on a page.", low=1, high=self.max_page_size),
        ]
