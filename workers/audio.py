"""Audio in and out for the workers: capped decoding, resampling, encoding.

Every decode is measured first (`apps.core.audio.probe`), then bounded: plain 16-bit WAV is
resampled block by block in numpy; everything else goes through an ffmpeg child process that may
only read the container the probe found from a pipe, with a memory limit, one thread, a deadline
and a cap on the samples it may write.
"""

import functools
import io
import os
import resource
import selectors
import subprocess
import threading
import time

import numpy as np
from django.conf import settings

from apps.core.audio import PCM_RATE, AudioError, AudioInfo, probe, wav_bytes
from apps.realtime.protocol import ErrorCode

__all__ = ["PCM_RATE", "AudioError", "decode_to_pcm", "encode", "pcm_to_float", "resample"]

# The decoders ffmpeg may use for what the probe lets through; anything else inside a container fails.
_DECODERS = "pcm_u8,pcm_s16le,pcm_s24le,pcm_s32le,pcm_f32le,pcm_f64le,flac,opus,libopus,vorbis,libvorbis,mp3,mp3float"
_DEMUXERS = "wav,flac,ogg,mp3,matroska,webm"


def pcm_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """int16 samples at `src_rate` → int16 at `dst_rate` (soxr, high quality)."""
    if src_rate == dst_rate or not len(samples):
        return samples.astype(np.int16, copy=False)
    import soxr

    out = soxr.resample(samples.astype(np.float32) / 32768.0, src_rate, dst_rate)
    return np.clip(out * 32768.0, -32768, 32767).astype(np.int16)


def decode_to_pcm(data: bytes, rate: int = PCM_RATE, *, max_s: float | None = None) -> bytes:
    """A WAV, FLAC, Ogg, MP3 or WebM file → mono s16le at `rate`, at most `max_s` seconds of it.

    `max_s` defaults to AUDIO_MAX_UPLOAD_S. Raises AudioError: the probe's codes, `utterance_too_long`
    when the decoded audio runs past `max_s`, `corrupt_audio` when ffmpeg fails, `decode_timeout`.
    """
    max_s = settings.AUDIO_MAX_UPLOAD_S if max_s is None else max_s
    info = probe(data, max_s=max_s)
    max_bytes = int(max_s * rate) * 2
    if info.container == "wav" and info.codec == "pcm" and info.sample_width == 2:
        return _wav_pcm16(data, info, rate, max_bytes)
    return _ffmpeg(data, info.container, rate, max_bytes, max_s)


def _too_long(max_s: float) -> AudioError:
    return AudioError(ErrorCode.UTTERANCE_TOO_LONG, f"The audio runs past the {max_s:g} s limit.")


def _wav_pcm16(data: bytes, info: AudioInfo, rate: int, max_bytes: int) -> bytes:
    """16-bit PCM WAV without ffmpeg: the probe bounded its frames; this reads them one second at a time."""
    channels = info.channels
    samples = np.frombuffer(data, dtype="<i2", count=info.frames * channels, offset=info.data_offset)
    if channels == 1 and info.rate == rate:
        if len(samples) * 2 > max_bytes:
            raise _too_long(max_bytes / 2 / rate)
        return samples.tobytes()
    import soxr

    stream = soxr.ResampleStream(info.rate, rate, 1, dtype="float32") if info.rate != rate else None
    out = bytearray()
    step = info.rate * channels
    for start in range(0, len(samples), step):
        block = samples[start : start + step].reshape(-1, channels).mean(axis=1, dtype=np.float32) / 32768.0
        last = start + step >= len(samples)
        resampled = stream.resample_chunk(block, last=last) if stream is not None else block
        out += np.clip(resampled * 32768.0, -32768, 32767).astype(np.int16).tobytes()
        if len(out) > max_bytes:
            raise _too_long(max_bytes / 2 / rate)
    return bytes(out)


def _child_limits(memory: int, cpu_s: int) -> None:  # runs in the forked child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))


def _ffmpeg(data: bytes, container: str, rate: int, max_bytes: int, max_s: float) -> bytes:
    """Decode with ffmpeg in a child process: `container` only, from a pipe, capped in memory, time and output."""
    args = [
        "ffmpeg",
        *("-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1"),
        *("-protocol_whitelist", "pipe", "-format_whitelist", _DEMUXERS, "-codec_whitelist", _DECODERS),
        *("-f", container, "-i", "pipe:0"),
        *("-map", "0:a:0", "-vn", "-sn", "-dn", "-filter_threads", "1"),
        # mono first, then resample: half the work of resampling every channel (7.1 at 192 kHz)
        *("-af", f"aformat=channel_layouts=mono,aresample={rate}", "-c:a", "pcm_s16le", "-f", "s16le", "pipe:1"),
    ]
    deadline = time.monotonic() + settings.AUDIO_DECODE_TIMEOUT_S
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # setrlimit only; the CPU limit is a backstop behind the deadline below
        preexec_fn=functools.partial(
            _child_limits, settings.AUDIO_DECODE_MEMORY_MB * 1024 * 1024, int(settings.AUDIO_DECODE_TIMEOUT_S) + 1
        ),
        close_fds=True,
    )
    writer = threading.Thread(target=_feed, args=(proc.stdin, data), daemon=True)
    writer.start()
    out, err = bytearray(), bytearray()
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ, out)
            selector.register(proc.stderr, selectors.EVENT_READ, err)
            while selector.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AudioError(
                        ErrorCode.DECODE_TIMEOUT, f"Decoding took longer than {settings.AUDIO_DECODE_TIMEOUT_S:g} s."
                    )
                for key, _ in selector.select(left):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                    elif key.data is out:
                        out += chunk
                        if len(out) > max_bytes:
                            raise _too_long(max_s)
                    else:
                        err += chunk[: max(0, 4096 - len(err))]
        code = proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise AudioError(
            ErrorCode.DECODE_TIMEOUT, f"Decoding took longer than {settings.AUDIO_DECODE_TIMEOUT_S:g} s."
        ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        writer.join(1)
    if code < 0:  # killed by a limit: RLIMIT_CPU
        raise AudioError(ErrorCode.DECODE_TIMEOUT, "Decoding was stopped at its time limit.")
    if code:
        reason = err.decode(errors="replace").strip().splitlines()
        raise AudioError(
            ErrorCode.CORRUPT_AUDIO, f"The audio could not be decoded: {(reason or ['ffmpeg failed'])[-1][:200]}"
        )
    if len(out) % 2:
        out = out[:-1]
    return bytes(out)


def _feed(pipe, data: bytes) -> None:
    """Write the file to ffmpeg's stdin; ffmpeg may stop reading (killed, or it gave up) at any point."""
    try:
        pipe.write(data)
    except (BrokenPipeError, OSError, ValueError):
        pass
    finally:
        try:
            pipe.close()
        except (BrokenPipeError, OSError):
            pass


def encode(pcm: bytes, rate: int, fmt: str) -> bytes:
    """s16le mono → wav, mp3 or ogg (opus) bytes."""
    if fmt == "wav":
        return wav_bytes(pcm, rate)
    from pydub import AudioSegment

    segment = AudioSegment(data=pcm, sample_width=2, frame_rate=rate, channels=1)
    buf = io.BytesIO()
    if fmt == "mp3":
        segment.export(buf, format="mp3", bitrate="64k")
    elif fmt == "ogg":
        segment.export(buf, format="ogg", codec="libopus", bitrate="32k")
    else:
        raise AudioError(ErrorCode.UNSUPPORTED_FORMAT, f"Unknown audio format {fmt!r}; use wav, mp3 or ogg.")
    return buf.getvalue()
