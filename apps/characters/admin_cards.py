"""The admin's character card pages: the upload of card files (bounded before a byte is read, then
while it is read) and the download of exported cards. Thin: import and export are services (cardio)."""

import io
import logging
import tempfile
import zipfile
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import FileResponse

from apps.characters import cards
from apps.characters.cardio import character_export_card, character_import_card
from apps.characters.models import Character
from apps.core.errors import AppError
from apps.realtime.protocol import ErrorCode

log = logging.getLogger(__name__)

UPLOAD_FIELD = "cards"
_MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and the CSRF token around the files
_SHOWN_NAME_CHARS = 120


def card_upload_max_bytes() -> int:
    """The largest card upload: CARD_IMPORT_MAX_FILES files of CARD_MAX_BYTES, but never more than
    DATA_UPLOAD_MAX_MEMORY_SIZE, past which Daphne refuses a body before Django sees it."""
    return min(cards.CARD_MAX_BYTES * settings.CARD_IMPORT_MAX_FILES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


def card_upload_refusal(request) -> str | None:
    """Why the upload cannot be taken, from its headers alone (nothing of the body is read), or None."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if not declared:  # Django parses a multipart body without a length as empty
        return "The upload has no Content-Length; send the files from the form."
    if declared > card_upload_max_bytes() + _MULTIPART_OVERHEAD:
        return f"The upload is {declared} bytes; an import takes at most {card_upload_max_bytes()} bytes of files."
    return None


class CardUploadHandler(FileUploadHandler):
    """Holds the files of the multipart field `cards` in memory, in the order they came: each up to
    CARD_MAX_BYTES (a larger one is counted, not kept: its bytes are None), at most
    CARD_IMPORT_MAX_FILES of them. Reading stops, the rest unread, once the files pass the upload's cap
    or one file too many starts. The only upload handler of the import page: nothing goes to disk."""

    def __init__(self):
        super().__init__()
        self.max_files, self.max_bytes = settings.CARD_IMPORT_MAX_FILES, card_upload_max_bytes()
        self.max_file_bytes = cards.CARD_MAX_BYTES
        self.files: list[tuple[str, bytes | None]] = []
        self.received, self.too_large, self.too_many = 0, False, False
        self.buffer: io.BytesIO | None = None
        self.oversized = False

    def new_file(self, field_name, *args, **kwargs):
        super().new_file(field_name, *args, **kwargs)
        self.buffer, self.oversized = None, False
        if field_name != UPLOAD_FIELD:
            return
        if len(self.files) >= self.max_files:
            self.too_many = True
            raise StopUpload(connection_reset=True)  # read no further
        self.buffer = io.BytesIO()

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            self.too_large = True
            raise StopUpload(connection_reset=True)
        if self.buffer is not None and not self.oversized:
            if start + len(raw_data) > self.max_file_bytes:
                self.oversized, self.buffer = True, io.BytesIO()  # let go of what it held
            else:
                self.buffer.write(raw_data)
        return None

    def file_complete(self, file_size):
        if self.buffer is not None:
            self.files.append((self.file_name or "(no name)", None if self.oversized else self.buffer.getvalue()))
            self.buffer = None
        return None  # the files are read from `files`, not request.FILES


@dataclass
class ImportResult:
    """What became of one uploaded file: the character it made, or why not."""

    file_name: str
    character: Character | None = None
    error: str = ""
    code: str = ""


def cards_import(files: list[tuple[str, bytes | None]]) -> list[ImportResult]:
    """Import each file on its own, unpublished: a file that fails leaves nothing and stops nothing."""
    results = []
    for name, data in files:
        shown = name if len(name) <= _SHOWN_NAME_CHARS else f"{name[: _SHOWN_NAME_CHARS - 1]}…"
        if data is None:
            message = f"The file is over {cards.CARD_MAX_BYTES} bytes, the most a card file may have (CARD_MAX_BYTES)."
            results.append(ImportResult(shown, error=message, code=ErrorCode.CARD_TOO_LARGE))
            continue
        try:
            character = character_import_card(data=data, filename_hint=name, publish=False)
        except AppError as exc:
            results.append(ImportResult(shown, error=exc.message.removeprefix(f"{name}: "), code=exc.code))
        except Exception:  # noqa: BLE001 - a bug on one file must not cost the others (logged with its trace)
            log.exception("importing the card file %r failed", name)
            results.append(ImportResult(shown, error="The file could not be imported: an internal error (logged)."))
        else:
            results.append(ImportResult(shown, character=character))
    return results


def cards_download(characters, *, spec: str) -> tuple[FileResponse | None, list[str]]:
    """One card file (a PNG with the avatar, else JSON) for one character, a zip of them for several,
    and the messages of the characters that could not be exported (response None: not one could)."""
    characters, errors = list(characters), []

    def export(character: Character) -> tuple[str, bytes] | None:
        fmt = "png" if character.avatar else "json"
        try:
            return f"{character.slug}.{fmt}", character_export_card(character=character, fmt=fmt, spec=spec)
        except AppError as exc:
            errors.append(f"{character.name}: {exc.message}")
            return None

    if len(characters) == 1:
        card = export(characters[0])
        if card is None:
            return None, errors
        name, data = card
        content_type = "image/png" if name.endswith(".png") else "application/json"
        return FileResponse(io.BytesIO(data), as_attachment=True, filename=name, content_type=content_type), errors
    spool, written = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024), 0  # noqa: SIM115 - the response closes it
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as archive:
        for character in characters:  # one card in memory at a time
            card = export(character)
            if card is not None:
                archive.writestr(*card)
                written += 1
    if not written:
        spool.close()
        return None, errors
    spool.seek(0)
    name = f"character-cards-{spec}.zip"
    return FileResponse(spool, as_attachment=True, filename=name, content_type="application/zip"), errors
