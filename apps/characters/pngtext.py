"""PNG text chunks, read and written without decoding the image: how character cards travel in a picture.

Every declared size is checked against the bytes that are there before anything is copied, the walk
stops after PNG_MAX_CHUNKS, and a compressed text chunk is inflated with a cap on its output. Pixels
are never decoded (no Pillow on untrusted files): IDAT chunks are only stepped over.
"""

import struct
import zlib
from dataclasses import dataclass

from apps.core.errors import AppError
from apps.realtime.protocol import ErrorCode

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# libpng writes 8 KiB IDAT chunks: a 16 MiB picture is ~2 000 chunks, a V3 card's embedded assets
# add one chunk each. 10 000 bounds the walk (~10 ms of Python) far above any card seen.
PNG_MAX_CHUNKS = 10_000
_MAX_LENGTH = 2**31 - 1  # the PNG spec's largest chunk
_TEXT = (b"tEXt", b"zTXt", b"iTXt")
_KEYWORD_MAX = 79  # PNG keywords are 1-79 Latin-1 bytes


@dataclass(frozen=True)
class Chunk:
    kind: bytes  # b"IHDR", b"tEXt", …
    start: int  # where its length field starts
    end: int  # just after its CRC

    @property
    def data(self) -> slice:
        return slice(self.start + 8, self.end - 4)


def _invalid(message: str) -> AppError:
    return AppError(ErrorCode.INVALID_CARD, message)


def png_chunks(png: bytes) -> list[Chunk]:
    """The chunks of `png` up to IEND, each length and CRC checked; AppError when the file lies or is cut."""
    view, size = memoryview(png), len(png)
    if not png.startswith(SIGNATURE):
        raise _invalid("The file is not a PNG image.")
    chunks, at = [], len(SIGNATURE)
    while True:
        if size - at < 12:
            raise _invalid(f"The PNG is cut short at byte {at}: it ends without its IEND chunk.")
        length, kind = struct.unpack_from(">I4s", png, at)
        if not kind.isalpha():
            raise _invalid(f"The PNG has a chunk with a type that is not 4 letters ({kind!r}) at byte {at}.")
        name = kind.decode("ascii")
        if length > _MAX_LENGTH:
            raise _invalid(f"The PNG's {name} chunk at byte {at} declares {length} bytes, over PNG's 2^31-1.")
        if length > size - at - 12:
            raise _invalid(
                f"The PNG's {name} chunk at byte {at} declares {length} bytes but only {size - at - 12} follow:"
                " the file is cut short or damaged."
            )
        if len(chunks) == PNG_MAX_CHUNKS:
            raise AppError(ErrorCode.CARD_TOO_LARGE, f"The PNG has more than {PNG_MAX_CHUNKS} chunks (PNG_MAX_CHUNKS).")
        chunk = Chunk(kind, at, at + 12 + length)
        (crc,) = struct.unpack_from(">I", png, chunk.end - 4)
        if zlib.crc32(view[at + 4 : chunk.end - 4]) != crc:  # as SillyTavern's reader: a bad CRC is damage
            raise _invalid(f"The PNG's {name} chunk at byte {at} fails its CRC check: the file is damaged.")
        if not chunks and kind != b"IHDR":
            raise _invalid("The PNG does not start with an IHDR chunk.")
        chunks.append(chunk)
        if kind == b"IEND":
            return chunks  # bytes after IEND are not part of the image
        at = chunk.end


def _keyword(png: bytes, chunk: Chunk) -> str | None:
    """A text chunk's keyword, lower-cased (readers match `chara`/`ccv3` in any case), or None."""
    head = png[chunk.data][: _KEYWORD_MAX + 1]
    end = head.find(b"\0")
    return head[:end].decode("latin-1").lower() if end > 0 else None


def _inflate(compressed: bytes, max_bytes: int, where: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(compressed, max_bytes + 1)  # never more than the cap + 1 byte
    except zlib.error:
        raise _invalid(f"The {where} is not valid zlib data.") from None
    if len(text) > max_bytes:
        raise AppError(ErrorCode.CARD_TOO_LARGE, f"The {where} inflates to more than {max_bytes} bytes.")
    if not inflater.eof:
        raise _invalid(f"The {where} is cut short (its zlib stream does not end).")
    return text


def _text_of(png: bytes, chunk: Chunk, keyword: str, max_bytes: int) -> bytes:
    """The text of a tEXt, zTXt or iTXt chunk, refused once over `max_bytes` (compressed: while inflating)."""
    where = f"`{keyword}` {chunk.kind.decode()} chunk"
    body_at = chunk.start + 8 + len(keyword) + 1
    if chunk.kind == b"tEXt":
        if chunk.end - 4 - body_at > max_bytes:
            raise AppError(ErrorCode.CARD_TOO_LARGE, f"The {where} holds more than {max_bytes} bytes.")
        return png[body_at : chunk.end - 4]
    body = png[body_at : chunk.end - 4]
    if chunk.kind == b"zTXt":
        if body[:1] != b"\0":
            raise _invalid(f"The {where} uses an unknown compression method.")
        return _inflate(body[1:], max_bytes, where)
    # iTXt: compression flag, method, language tag \0, translated keyword \0, UTF-8 text
    flag, method = body[:1], body[1:2]
    language_end = body.find(b"\0", 2)
    text_at = body.find(b"\0", language_end + 1) + 1 if language_end >= 0 else 0
    if flag not in (b"\0", b"\1") or not text_at or (flag == b"\1" and method != b"\0"):
        raise _invalid(f"The {where} is malformed.")
    if flag == b"\1":
        return _inflate(body[text_at:], max_bytes, where)
    if len(body) - text_at > max_bytes:
        raise AppError(ErrorCode.CARD_TOO_LARGE, f"The {where} holds more than {max_bytes} bytes.")
    return body[text_at:]


def png_text(png: bytes, keywords: tuple[str, ...], *, max_bytes: int) -> dict[str, bytes]:
    """The text of the first tEXt/zTXt/iTXt chunk for each of `keywords` (lower case) that `png` has.

    Only those chunks are copied or inflated; any text over `max_bytes` is refused (card_too_large)."""
    found: dict[str, bytes] = {}
    for chunk in png_chunks(png):
        if chunk.kind in _TEXT:
            keyword = _keyword(png, chunk)
            if keyword in keywords and keyword not in found:
                found[keyword] = _text_of(png, chunk, keyword, max_bytes)
    return found


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_text(png: bytes, texts: list[tuple[str, bytes]], *, drop: tuple[str, ...]) -> bytes:
    """`png` without its text chunks for the keywords in `drop` (lower case), with `texts` as tEXt chunks
    before IEND."""
    kept = [
        png[chunk.start : chunk.end]
        for chunk in png_chunks(png)
        if chunk.kind != b"IEND" and not (chunk.kind in _TEXT and _keyword(png, chunk) in drop)
    ]
    added = [_chunk(b"tEXt", keyword.encode("latin-1") + b"\0" + text) for keyword, text in texts]
    return b"".join([SIGNATURE, *kept, *added, _chunk(b"IEND", b"")])


def placeholder_png() -> bytes:
    """A 1×1 grey PNG, for a card exported without a picture."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1×1, 8-bit greyscale, no interlace
    pixels = zlib.compress(b"\0\x80")  # one scanline: filter 0, grey 128
    return b"".join([SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", pixels), _chunk(b"IEND", b"")])
