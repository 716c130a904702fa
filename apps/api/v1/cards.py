"""Character Cards over the API: any character you can see as a card file (V2/V3, JSON or PNG), and
a card file made into a new, unpublished character by staff who may add characters (as the admin's
import does: all or nothing, a clear error code for a file that cannot be read).

The upload is the raw body (`Content-Type: image/png` or `application/json`), refused from its
Content-Length before a byte is read when it is over CARD_MAX_BYTES, and read no further than that.
"""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api.v1 import serializers as s
from apps.characters.cardio import character_export_card, character_import_card
from apps.characters.cards import CARD_MAX_BYTES
from apps.characters.selectors import character_get_visible
from apps.core.errors import AppError
from apps.realtime.protocol import ErrorCode

_TOO_LARGE = f"A character card file is at most {CARD_MAX_BYTES} bytes."


def _too_large() -> AppError:
    return AppError(ErrorCode.CARD_TOO_LARGE, _TOO_LARGE)


class CardFileParser(BaseParser):
    """The body as bytes, at most CARD_MAX_BYTES of it: parse_card tells a PNG from JSON by its bytes,
    never by the Content-Type the client sent."""

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        if stream is None:
            return b""
        data = stream.read(CARD_MAX_BYTES + 1)
        if len(data) > CARD_MAX_BYTES:
            raise _too_large()
        return data


class PngCardParser(CardFileParser):
    media_type = "image/png"


class JsonCardParser(CardFileParser):
    media_type = "application/json"


class MayImportCards(BasePermission):
    message = "Importing characters needs staff permission to add characters."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.has_perm("characters.add_character"))


@extend_schema(
    tags=["characters"],
    summary="A character as a Character Card file",
    parameters=[
        OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH, description="The character's `name`."),
        OpenApiParameter("file", OpenApiTypes.STR, enum=["png", "json"], description="Default: png."),
        OpenApiParameter("spec", OpenApiTypes.STR, enum=["v2", "v3"], description="Default: v2."),
    ],
    responses={
        (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="Its avatar, carrying the card."),
        (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT, description="The card as JSON."),
    },
)
class CharacterCard(APIView):
    permission_classes = [AllowAny]

    def perform_content_negotiation(self, request, force=False):
        """The file is answered as it is, whatever the client accepts; an error in JSON, the API's shape."""
        return JSONRenderer(), JSONRenderer.media_type

    def get(self, request, name: str):
        fmt, spec = request.query_params.get("file", "png"), request.query_params.get("spec", "v2")
        character = character_get_visible(user=request.user, slug=name)
        if character is None:
            raise AppError(ErrorCode.UNKNOWN_CHARACTER, f"No character named {name!r}.")
        data = character_export_card(character=character, fmt=fmt, spec=spec)
        response = HttpResponse(data, content_type="image/png" if fmt == "png" else "application/json")
        response["Content-Disposition"] = f'attachment; filename="{character.slug}.{fmt}"'
        return response


@extend_schema(
    tags=["characters"],
    summary="Import a Character Card file as a new, unpublished character (staff)",
    request={"image/png": OpenApiTypes.BINARY, "application/json": OpenApiTypes.OBJECT},
    responses={201: s.CharacterSerializer},
)
class CharacterImport(APIView):
    permission_classes = [MayImportCards]
    parser_classes = [PngCardParser, JsonCardParser]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authenticated and permitted before the size is looked at
        declared = request.META.get("CONTENT_LENGTH") or ""
        if declared.isdigit() and int(declared) > CARD_MAX_BYTES:
            raise _too_large()

    def post(self, request):
        character = character_import_card(data=request.data)
        return Response(
            s.CharacterSerializer(character, context={"request": request}).data, status=status.HTTP_201_CREATED
        )
