"""Hostile audio files, built at test time (struct for headers, Debian's ffmpeg for real encodings).

Each case is (name, bytes, code): the error code a client must get for it. `edge` cases are refused
by the header probe in the web process; the others pass the probe and are stopped by the capped
decode on the ASR worker.
"""

import functools
import random
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PLAYLIST = b"ffconcat version 1.0\nfile /etc/passwd\nfile /etc/hostname\n"
M3U = b"#EXTM3U\n#EXTINF:-1,x\nfile:///etc/passwd\n"


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    code: str
    edge: bool = True  # refused at the edge, before any decoding


def wav(rate: int, channels: int, body: bytes, *, bits: int = 16, tag: int = 1, data_size: int | None = None) -> bytes:
    """A RIFF/WAVE file whose fmt chunk says whatever the caller likes."""
    align = (channels * bits // 8) & 0xFFFF
    fmt = struct.pack("<HHIIHH", tag, channels, rate & 0xFFFFFFFF, (rate * align) & 0xFFFFFFFF, align, bits)
    size = len(body) if data_size is None else data_size
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def ffmpeg(source: str, seconds: float, fmt: str, *args: str, seekable: bool = True) -> bytes:
    """Encode an ffmpeg lavfi source; `seekable` writes to a file, so the muxer fills in lengths."""
    base = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", source, "-t", str(seconds)]
    if not seekable:
        return subprocess.run([*base, *args, "-f", fmt, "pipe:1"], capture_output=True, check=True).stdout
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / f"out.{fmt}"
        subprocess.run([*base, *args, "-f", fmt, str(out)], capture_output=True, check=True)
        return out.read_bytes()


def encode_file(wav_bytes: bytes, fmt: str, *args: str) -> bytes:
    """Re-encode a WAV file (real speech) into another container."""
    with tempfile.TemporaryDirectory() as folder:
        src, out = Path(folder) / "in.wav", Path(folder) / f"out.{fmt}"
        src.write_bytes(wav_bytes)
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(src), *args, str(out)]
        subprocess.run(cmd, capture_output=True, check=True)
        return out.read_bytes()


SILENCE_71 = "anullsrc=r=192000:cl=7.1"  # two minutes of this is the 56 KB FLAC
SILENCE_48K = "anullsrc=r=48000:cl=stereo"


def _flac_rate(flac: bytes, rate: int) -> bytes:
    """The same FLAC with STREAMINFO's 20-bit sample rate replaced."""
    data = bytearray(flac)
    data[18] = (rate >> 12) & 0xFF
    data[19] = (rate >> 4) & 0xFF
    data[20] = ((rate & 0x0F) << 4) | (data[20] & 0x0F)
    return bytes(data)


def _opus_channels(ogg: bytes, channels: int) -> bytes:
    data = bytearray(ogg)
    at = data.index(b"OpusHead") + 9
    data[at] = channels
    return bytes(data)


def _last_granule(ogg: bytes, granule: int) -> bytes:
    """The same Ogg file whose last page claims to end at `granule` (a header that lies about the length)."""
    data = bytearray(ogg)
    at = data.rindex(b"OggS")
    data[at + 6 : at + 14] = struct.pack("<q", granule)
    return bytes(data)


def _webm_channels(webm: bytes, channels: int) -> bytes:
    """The same WebM with its audio track's Channels element (0x9F, one byte) set."""
    data = bytearray(webm)
    at = data.index(b"\x9f\x81")
    data[at + 2] = channels
    return bytes(data)


def _webm_codec(webm: bytes, codec: bytes) -> bytes:
    data = bytearray(webm)
    at = data.index(b"\x86\x86A_OPUS")
    assert len(codec) == 6
    data[at + 2 : at + 8] = codec
    return bytes(data)


@functools.cache
def hostile() -> tuple[Case, ...]:
    rng = random.Random(9)
    noise = bytes(rng.getrandbits(8) for _ in range(50_000))
    flac_120 = ffmpeg(SILENCE_71, 120, "flac")
    ogg_120 = ffmpeg(SILENCE_71, 120, "ogg", "-ar", "48000", "-c:a", "libopus")
    tone_wav = ffmpeg("sine=f=440:r=16000", 1, "wav")
    tone_ogg = ffmpeg("sine=f=440:r=48000", 1, "ogg", "-c:a", "libopus")
    tone_webm = ffmpeg("sine=f=440:r=48000", 1, "webm", "-c:a", "libopus")
    tone_mp3 = ffmpeg("sine=f=440:r=44100", 1, "mp3")
    return (
        # claimed rates no recording has
        Case("wav 2 Hz, 100 KB body", wav(2, 1, bytes(100_000)), "invalid_audio"),
        Case("wav 1 Hz, 150 KB body", wav(1, 1, bytes(150_000)), "invalid_audio"),
        Case("wav 4 GHz", wav(4_000_000_000, 1, bytes(1000)), "invalid_audio"),
        Case("flac 1 Hz", _flac_rate(flac_120, 1), "invalid_audio"),
        # channel counts
        Case("wav 65535 channels", wav(16000, 65535, bytes(100_000)), "invalid_audio"),
        Case("wav 0 channels", wav(16000, 0, bytes(1000)), "invalid_audio"),
        Case("ogg opus 255 channels", _opus_channels(tone_ogg, 255), "invalid_audio"),
        Case("webm 64 channels", _webm_channels(tone_webm, 64), "invalid_audio"),
        # sizes
        Case("wav 12-bit float", wav(16000, 1, bytes(1000), bits=12, tag=3), "invalid_audio"),
        Case("wav data size lies (1 GB)", wav(16000, 1, bytes(1000), data_size=1_000_000_000), "corrupt_audio"),
        Case("wav data size lies (+2 bytes)", wav(16000, 1, bytes(1000), data_size=1002), "corrupt_audio"),
        Case("wav no samples", wav(16000, 1, b""), "empty_audio"),
        # long compressed silence whose header says so
        Case("flac 120 s 7.1 192 kHz silence", flac_120, "utterance_too_long"),
        Case("ogg opus 120 s 7.1 silence", ogg_120, "utterance_too_long"),
        Case("ogg vorbis 120 s silence", ffmpeg(SILENCE_48K, 120, "ogg", "-c:a", "libvorbis"), "utterance_too_long"),
        Case("mp3 120 s silence", ffmpeg(SILENCE_48K, 120, "mp3", "-ar", "8000", "-b:a", "8k"), "utterance_too_long"),
        Case("webm opus 120 s silence", ffmpeg(SILENCE_48K, 120, "webm", "-c:a", "libopus"), "utterance_too_long"),
        # long compressed silence whose header does not say (streamed) or lies: the decode cap stops it
        Case(
            "flac 120 s 7.1 192 kHz, streamed (no length)",
            ffmpeg(SILENCE_71, 120, "flac", seekable=False),
            "utterance_too_long",
            edge=False,
        ),
        Case("ogg opus 120 s, last page claims 1 s", _last_granule(ogg_120, 48000), "utterance_too_long", edge=False),
        # truncated
        Case("wav cut inside its samples", tone_wav[: len(tone_wav) // 2], "corrupt_audio"),
        Case("wav cut inside its header", tone_wav[:30], "corrupt_audio"),
        Case("flac cut inside STREAMINFO", flac_120[:20], "corrupt_audio"),
        Case("ogg cut after its headers", tone_ogg[:200], "empty_audio"),
        Case("mp3 cut to 3 bytes", tone_mp3[:3], "corrupt_audio"),
        Case("webm cut inside the EBML header", tone_webm[:20], "corrupt_audio"),
        # mislabelled
        Case("flac bytes behind an Ogg magic", b"OggS" + flac_120[4:], "corrupt_audio"),
        Case("mp3 frame header, then FLAC", tone_mp3[:4] + flac_120, "corrupt_audio"),
        Case("webm whose audio is AAC", _webm_codec(tone_webm, b"A_AAC\0"), "unsupported_audio"),
        Case("wav of ADPCM", wav(16000, 1, bytes(1000), tag=2, bits=4), "unsupported_audio"),
        # playlists that start with a container's magic
        Case("fLaC + ffconcat", b"fLaC" + PLAYLIST, "corrupt_audio"),
        Case("RIFF/WAVE + ffconcat", b"RIFF\x00\x00\x00\x00WAVE" + PLAYLIST, "corrupt_audio"),
        Case("OggS + m3u", b"OggS" + M3U, "corrupt_audio"),
        Case("ID3 + ffconcat", b"ID3" + PLAYLIST, "corrupt_audio"),
        Case("EBML + ffconcat", b"\x1aE\xdf\xa3" + PLAYLIST, "corrupt_audio"),
        Case("mp3 sync + m3u", b"\xff\xfb" + M3U, "corrupt_audio"),
        # garbage after a valid magic
        Case("fLaC + noise", b"fLaC" + noise, "corrupt_audio"),
        Case("OggS + noise", b"OggS" + noise, "corrupt_audio"),
        Case("EBML + noise", b"\x1aE\xdf\xa3" + noise, "corrupt_audio"),
        Case("mp3 sync + noise", b"\xff\xfb" + noise, "corrupt_audio"),
        Case("RIFF + noise", b"RIFF" + noise, "corrupt_audio"),
    )
