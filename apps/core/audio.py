"""Audio at the edge: base64 and PCM checks, and a header probe that measures a file before anything decodes it.

Pure and cheap (no numpy, no ffmpeg, a few struct reads bounded by the header sizes): safe to run in
the web process on every message. The probe reads what a container declares (rate, channels, sample
width, frames, duration) and refuses what no real recording has, so that nothing expands a
client's bytes before they are measured. Decoding itself, with caps, is `workers.audio`.
"""

import base64
import binascii
import io
import struct
import wave
from dataclasses import dataclass

from apps.core.errors import AppError
from apps.realtime.protocol import ErrorCode

PCM_RATE = 16000  # what the socket carries in and the ASR engine takes: 16 kHz mono s16le
MIN_RATE, MAX_RATE = 8000, 192000  # telephone to studio; a header outside this is not a recording
MAX_CHANNELS = 8  # 7.1
CONTAINERS = ("wav", "flac", "ogg", "mp3", "matroska")  # the ffmpeg demuxers we accept, by name

_MAGIC = (
    (b"RIFF", "wav"),
    (b"fLaC", "flac"),
    (b"OggS", "ogg"),
    (b"\x1aE\xdf\xa3", "matroska"),
    (b"ID3", "mp3"),
    (b"\xff\xfb", "mp3"),  # MPEG-1 layer III frame sync
    (b"\xff\xf3", "mp3"),  # MPEG-2 layer III frame sync
)
_SCAN_BYTES = 64 * 1024  # how far the probe looks for a first MP3 frame or the last Ogg page
_MAX_CHUNKS = 256  # RIFF chunks / EBML elements walked before giving up


class AudioError(AppError):
    """Audio a client sent that cannot be used; `code` is the protocol error code."""


def b64decode_audio(data: str) -> bytes:
    """Bytes from a base64 string; raises AudioError(`invalid_audio`)."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise AudioError(ErrorCode.INVALID_AUDIO, "`audio_base64` is not valid base64.") from None


def pcm_from_base64(data: str) -> bytes:
    """Raw s16le bytes from a base64 string; raises AudioError(`invalid_audio`)."""
    return pcm_check(b64decode_audio(data))


def pcm_check(pcm: bytes) -> bytes:
    if len(pcm) % 2:
        raise AudioError(ErrorCode.INVALID_AUDIO, "PCM audio must be 16-bit samples (an even number of bytes).")
    return pcm


def container_of(data: bytes) -> str | None:
    """The container `data` starts like (an ffmpeg demuxer name), or None for bytes with no known magic."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header declares. None where the container does not say (streamed WebM, FLAC without a count)."""

    container: str  # ffmpeg demuxer name, one of CONTAINERS
    codec: str
    rate: int | None
    channels: int | None
    sample_width: int | None = None  # bytes per sample, where the container has a fixed one
    frames: int | None = None
    duration_s: float | None = None
    data_offset: int = 0  # WAV: where the samples start
    data_size: int = 0  # WAV: how many bytes of samples


def probe(data: bytes, *, max_s: float) -> AudioInfo:
    """Measure a container's header; raises AudioError when it is not one we accept or declares the implausible.

    Codes: `empty_audio`, `unsupported_audio` (no accepted container or codec), `corrupt_audio`
    (a header that does not parse, or a size that does not match the bytes), `invalid_audio`
    (a rate, channel count or sample width no recording has), `utterance_too_long` (a declared
    duration over `max_s`).
    """
    if not data:
        raise AudioError(ErrorCode.EMPTY_AUDIO, "The audio is empty.")
    container = container_of(data)
    if container is None:
        raise AudioError(
            ErrorCode.UNSUPPORTED_AUDIO, "The audio is not a WAV, FLAC, Ogg (Opus, Vorbis), MP3 or WebM file."
        )
    reader = {"wav": _wav, "flac": _flac, "ogg": _ogg, "mp3": _mp3, "matroska": _matroska}[container]
    try:
        info = reader(data)
    except (struct.error, IndexError, ValueError, OverflowError, StopIteration, UnicodeError):
        raise AudioError(ErrorCode.CORRUPT_AUDIO, f"The {container} header is truncated or malformed.") from None
    _check(info, max_s)
    return info


def _check(info: AudioInfo, max_s: float) -> None:
    name = info.container.upper() if info.container != "matroska" else "WebM"
    if info.rate is not None and not MIN_RATE <= info.rate <= MAX_RATE:
        raise AudioError(
            ErrorCode.INVALID_AUDIO,
            f"The {name} header claims {info.rate} Hz; accepted rates are {MIN_RATE}–{MAX_RATE} Hz.",
        )
    if info.channels is not None and not 1 <= info.channels <= MAX_CHANNELS:
        raise AudioError(
            ErrorCode.INVALID_AUDIO,
            f"The {name} header claims {info.channels} channels; at most {MAX_CHANNELS} are accepted.",
        )
    if info.sample_width is not None and not 1 <= info.sample_width <= 8:
        raise AudioError(ErrorCode.INVALID_AUDIO, f"The {name} header claims {info.sample_width * 8}-bit samples.")
    if info.duration_s is not None and info.duration_s > max_s:
        raise AudioError(
            ErrorCode.UTTERANCE_TOO_LONG, f"The audio lasts {info.duration_s:.1f} s; the limit is {max_s:g} s."
        )
    if info.frames == 0 or info.duration_s == 0:
        raise AudioError(ErrorCode.EMPTY_AUDIO, "The audio has no samples.")


def _corrupt(message: str) -> AudioError:
    return AudioError(ErrorCode.CORRUPT_AUDIO, message)


# --- WAV ---------------------------------------------------------------------------------------

_WAV_CODECS = {1: "pcm", 3: "float"}


def _wav(data: bytes) -> AudioInfo:
    if data[8:12] != b"WAVE":
        raise _corrupt("A RIFF file that is not WAVE.")
    pos, fmt = 12, None
    for _ in range(_MAX_CHUNKS):
        if pos + 8 > len(data):
            break
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt ":
            if size < 16 or body + size > len(data):
                raise _corrupt("The WAV fmt chunk is truncated.")
            tag, channels, rate, _byte_rate, align, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == 0xFFFE and size >= 26:  # WAVE_FORMAT_EXTENSIBLE: the codec is the subformat's first two bytes
                tag = struct.unpack_from("<H", data, body + 24)[0]
            fmt = (tag, channels, rate, align, bits)
        elif chunk == b"data":
            if fmt is None:
                raise _corrupt("The WAV data chunk comes before its fmt chunk.")
            return _wav_info(data, fmt, body, size)
        pos = body + size + (size & 1)
    raise _corrupt("The WAV file has no fmt and data chunks.")


def _wav_info(data: bytes, fmt: tuple, body: int, size: int) -> AudioInfo:
    tag, channels, rate, align, bits = fmt
    codec = _WAV_CODECS.get(tag)
    if codec is None:
        raise AudioError(ErrorCode.UNSUPPORTED_AUDIO, f"WAV with codec tag {tag:#x}; send PCM or float samples.")
    if bits % 8 or not bits or (codec == "float" and bits not in (32, 64)):
        raise AudioError(ErrorCode.INVALID_AUDIO, f"The WAV header claims {bits}-bit {codec} samples.")
    width = bits // 8
    if not 1 <= channels <= MAX_CHANNELS:  # checked here too: the frame size below depends on it
        raise AudioError(
            ErrorCode.INVALID_AUDIO, f"The WAV header claims {channels} channels; at most {MAX_CHANNELS} are accepted."
        )
    if align != channels * width:
        raise _corrupt(f"The WAV header's block size ({align}) does not match {channels} × {bits}-bit samples.")
    available = len(data) - body
    if size in (0, 0xFFFFFFFF):  # a writer that streamed the file and never came back to fill the size in
        size = available
    elif size > available:
        raise _corrupt(f"The WAV data chunk claims {size} bytes but only {available} follow.")
    frames = size // align
    duration = frames / rate if rate else None
    return AudioInfo("wav", codec, rate, channels, width, frames, duration, data_offset=body, data_size=frames * align)


# --- FLAC --------------------------------------------------------------------------------------


def _flac(data: bytes) -> AudioInfo:
    if data[4] & 0x7F != 0 or int.from_bytes(data[5:8], "big") != 34 or len(data) < 42:
        raise _corrupt("The FLAC file does not start with its STREAMINFO block.")
    si = data[8:42]
    rate = (si[10] << 12) | (si[11] << 4) | (si[12] >> 4)
    channels = ((si[12] >> 1) & 7) + 1
    bits = (((si[12] & 1) << 4) | (si[13] >> 4)) + 1
    total = ((si[13] & 0x0F) << 32) | struct.unpack_from(">I", si, 14)[0]
    if bits < 4:
        raise AudioError(ErrorCode.INVALID_AUDIO, f"The FLAC header claims {bits}-bit samples.")
    frames = total or None  # 0: the encoder did not know the length (a stream)
    duration = total / rate if total and rate else None
    return AudioInfo("flac", "flac", rate, channels, None, frames, duration)


# --- Ogg ---------------------------------------------------------------------------------------


def _ogg_page(data: bytes, pos: int) -> tuple[int, int, int, int]:
    """(header type, granule position, serial, body start) of the Ogg page at `pos`."""
    if data[pos : pos + 4] != b"OggS" or data[pos + 4] != 0:
        raise ValueError("not an Ogg page")
    header_type, granule, serial = data[pos + 5], *struct.unpack_from("<qI", data, pos + 6)
    segments = data[pos + 26]
    if pos + 27 + segments > len(data):
        raise ValueError("truncated Ogg page")
    return header_type, granule, serial, pos + 27 + segments


def _ogg(data: bytes) -> AudioInfo:
    header_type, _, serial, body = _ogg_page(data, 0)
    if not header_type & 0x02:
        raise _corrupt("The first Ogg page does not begin a stream.")
    lacing = data[27:body]
    length = 0
    for value in lacing:
        length += value
        if value < 255:
            break
    packet = data[body : body + length]
    if packet.startswith(b"OpusHead") and len(packet) >= 19:
        codec, channels, pre_skip, rate = "opus", packet[9], struct.unpack_from("<H", packet, 10)[0], 48000
    elif packet.startswith(b"\x01vorbis") and len(packet) >= 30:
        codec, channels, rate = "vorbis", packet[11], struct.unpack_from("<I", packet, 12)[0]
        pre_skip = 0
    else:
        raise AudioError(ErrorCode.UNSUPPORTED_AUDIO, "Ogg audio that is neither Opus nor Vorbis.")
    granule = _ogg_last_granule(data, serial)
    duration = max(0, granule - pre_skip) / rate if granule is not None and rate else None
    return AudioInfo("ogg", codec, rate, channels, None, None, duration)


def _ogg_last_granule(data: bytes, serial: int) -> int | None:
    """The stream's last granule position (its length in samples), read from the last pages; None if not found."""
    floor = max(0, len(data) - _SCAN_BYTES)
    end = len(data)
    for _ in range(_MAX_CHUNKS):
        pos = data.rfind(b"OggS", floor, end)
        if pos < 0:
            return None
        try:
            _, granule, page_serial, _ = _ogg_page(data, pos)
        except (ValueError, struct.error, IndexError):
            granule, page_serial = -1, None
        if page_serial == serial and granule >= 0:
            return granule
        end = pos
    return None


# --- MP3 ---------------------------------------------------------------------------------------

_MP3_BITRATES = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1 layer III
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG-2 and 2.5 layer III
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


@dataclass(frozen=True)
class _Mp3Frame:
    version: int  # 3 MPEG-1, 2 MPEG-2, 0 MPEG-2.5
    rate: int
    bitrate: int  # kbit/s
    channels: int
    length: int  # bytes
    samples: int  # per frame


def _mp3_frame(data: bytes, pos: int) -> _Mp3Frame | None:
    """The layer III frame header at `pos`, or None if there is none."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    b1, b2, b3 = data[pos + 1], data[pos + 2], data[pos + 3]
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    bitrate = _MP3_BITRATES[1 if version == 3 else 2][bitrate_index]
    rate = _MP3_RATES[version][rate_index]
    samples = 1152 if version == 3 else 576
    length = samples // 8 * bitrate * 1000 // rate + padding
    return _Mp3Frame(version, rate, bitrate, 1 if b3 >> 6 == 3 else 2, length, samples)


def _mp3(data: bytes) -> AudioInfo:
    start = 0
    if data.startswith(b"ID3"):
        if len(data) < 10:
            raise _corrupt("The MP3 file is only the start of an ID3 tag.")
        start = 10 + sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(data[6:10]))
        start += 10 if data[5] & 0x10 else 0  # footer
        if start >= len(data):
            raise _corrupt("The MP3 file is an ID3 tag with no audio after it.")
    pos, limit = start, min(len(data), start + _SCAN_BYTES)
    while 0 <= pos < limit:
        frame = _mp3_frame(data, pos)
        if frame is not None:
            following = _mp3_frame(data, pos + frame.length)
            if pos + frame.length == len(data) or (
                following is not None and (following.version, following.rate) == (frame.version, frame.rate)
            ):
                return _mp3_info(data, pos, frame)
        pos = data.find(b"\xff", pos + 1, limit)
    raise _corrupt("No MP3 audio frames were found.")


def _mp3_info(data: bytes, pos: int, frame: _Mp3Frame) -> AudioInfo:
    side_info = (32 if frame.channels == 2 else 17) if frame.version == 3 else (17 if frame.channels == 2 else 9)
    tag = pos + 4 + side_info
    frames = None
    if data[tag : tag + 4] in (b"Xing", b"Info") and len(data) >= tag + 12:
        if struct.unpack_from(">I", data, tag + 4)[0] & 1:
            frames = struct.unpack_from(">I", data, tag + 8)[0]
    elif data[pos + 36 : pos + 40] == b"VBRI" and len(data) >= pos + 54:
        frames = struct.unpack_from(">I", data, pos + 50)[0]
    if frames is not None:
        duration = frames * frame.samples / frame.rate
    else:  # constant bit rate: the length follows from the size
        duration = (len(data) - pos) * 8 / (frame.bitrate * 1000)
    samples = frames * frame.samples if frames is not None else None
    return AudioInfo("mp3", "mp3", frame.rate, frame.channels, None, samples, duration)


# --- WebM / Matroska ---------------------------------------------------------------------------

_EBML, _DOCTYPE, _SEGMENT, _CLUSTER = 0x1A45DFA3, 0x4282, 0x18538067, 0x1F43B675
_INFO, _TIMECODE_SCALE, _DURATION = 0x1549A966, 0x2AD7B1, 0x4489
_TRACKS, _TRACK_ENTRY, _TRACK_TYPE, _CODEC_ID = 0x1654AE6B, 0xAE, 0x83, 0x86
_AUDIO, _SAMPLING_FREQUENCY, _CHANNELS, _BIT_DEPTH = 0xE1, 0xB5, 0x9F, 0x6264
_MKV_CODECS = {
    "A_OPUS": "opus",
    "A_VORBIS": "vorbis",
    "A_FLAC": "flac",
    "A_MPEG/L3": "mp3",
    "A_PCM/INT/LIT": "pcm",
    "A_PCM/FLOAT/IEEE": "float",
}


def _vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int, bool]:
    """(value, next position, all ones) of the EBML variable-length integer at `pos`."""
    first = data[pos]
    if not first:
        raise ValueError("EBML integer over 8 bytes")
    length = 9 - first.bit_length()
    value = first if keep_marker else first & (0xFF >> length)
    all_ones = value == (0xFF >> length)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
        all_ones = all_ones and byte == 0xFF
    if pos + length > len(data):
        raise ValueError("truncated EBML integer")
    return value, pos + length, all_ones


def _elements(data: bytes, pos: int, end: int):
    """(id, body start, body end or None for an unknown size) of each EBML element in [pos, end)."""
    for _ in range(_MAX_CHUNKS):
        if pos >= end:
            return
        element, pos, _ = _vint(data, pos, keep_marker=True)
        size, pos, unknown = _vint(data, pos, keep_marker=False)
        yield element, pos, None if unknown else pos + size
        if unknown:
            return
        pos += size


def _uint(data: bytes, start: int, end: int) -> int:
    return int.from_bytes(data[start:end], "big")


def _float(data: bytes, start: int, end: int) -> float:
    return struct.unpack(">f" if end - start == 4 else ">d", data[start:end])[0]


def _matroska(data: bytes) -> AudioInfo:
    element, body, header_end = next(_elements(data, 0, len(data)))
    if element != _EBML or header_end is None or header_end > len(data):
        raise _corrupt("The EBML header is truncated.")
    doctype = next((data[s:e] for i, s, e in _elements(data, body, header_end) if i == _DOCTYPE), None)
    if doctype is None:
        raise _corrupt("The EBML header has no DocType.")
    if doctype.rstrip(b"\0") not in (b"webm", b"matroska"):
        raise AudioError(ErrorCode.UNSUPPORTED_AUDIO, "An EBML file that is neither WebM nor Matroska.")
    element, body, segment_end = next(_elements(data, header_end, len(data)))
    if element != _SEGMENT:
        raise _corrupt("The WebM file has no segment.")
    scale, duration, track = 1_000_000, None, None
    for element, start, end in _elements(data, body, min(segment_end or len(data), len(data))):
        if element == _CLUSTER or end is None:
            break  # the audio starts: every header element we need comes before it
        if end > len(data):
            raise _corrupt("A WebM header element is truncated.")
        if element == _INFO:
            for child, s, e in _elements(data, start, end):
                if child == _TIMECODE_SCALE and e:
                    scale = _uint(data, s, e)
                elif child == _DURATION and e:
                    duration = _float(data, s, e)
        elif element == _TRACKS:
            track = track or _matroska_audio_track(data, start, end)
    if track is None:
        raise _corrupt("The WebM file has no audio track before its first cluster.")
    codec_id, rate, channels = track
    codec = _MKV_CODECS.get(codec_id)
    if codec is None:
        raise AudioError(
            ErrorCode.UNSUPPORTED_AUDIO, f"WebM audio in {codec_id or 'an unnamed codec'}; send Opus or Vorbis."
        )
    seconds = duration * scale / 1e9 if duration is not None else None
    if seconds is not None and not 0 <= seconds < 1e9:
        raise _corrupt("The WebM duration is not a number of seconds.")
    return AudioInfo("matroska", codec, rate, channels, None, None, seconds)


def _matroska_audio_track(data: bytes, start: int, end: int) -> tuple[str, int, int] | None:
    """(codec id, rate, channels) of the first audio track, with Matroska's defaults (8 kHz, mono)."""
    for element, s, e in _elements(data, start, end):
        if element != _TRACK_ENTRY or e is None:
            continue
        kind, codec_id, rate, channels = None, "", 8000.0, 1
        for child, cs, ce in _elements(data, s, e):
            if child == _TRACK_TYPE:
                kind = _uint(data, cs, ce)
            elif child == _CODEC_ID:
                codec_id = data[cs:ce].rstrip(b"\0").decode("ascii", "replace")
            elif child == _AUDIO and ce:
                for grand, gs, ge in _elements(data, cs, ce):
                    if grand == _SAMPLING_FREQUENCY:
                        rate = _float(data, gs, ge)
                    elif grand == _CHANNELS:
                        channels = _uint(data, gs, ge)
        if kind == 2:
            if rate != rate or not 0 <= rate < 1e9:  # NaN or absurd: reported as such below
                rate = 0.0
            return codec_id, int(rate), channels
    return None


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """s16le mono PCM as a WAV file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def pcm_resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Mono s16le PCM at `src_rate` → at `dst_rate` (soxr; for audio rendered ahead of time, at the edge)."""
    if src_rate == dst_rate or not pcm:
        return pcm
    import numpy as np
    import soxr

    out = soxr.resample(np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0, src_rate, dst_rate)
    return np.clip(out * 32768.0, -32768, 32767).astype(np.int16).tobytes()
