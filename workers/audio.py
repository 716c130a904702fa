"""Audio in and out: PCM checks, container decoding (pydub over ffmpeg), resampling, encoding."""

import base64
import binascii
import io
import wave

import numpy as np

PCM_RATE = 16000  # what the socket carries in and the ASR engine takes: 16 kHz mono s16le


class AudioError(Exception):
    """Audio a client sent that cannot be used; `code` is the protocol error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def b64decode_audio(data: str) -> bytes:
    """Bytes from a base64 string; raises AudioError(`invalid_audio`)."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise AudioError("invalid_audio", "`audio_base64` is not valid base64.") from None


def pcm_from_base64(data: str) -> bytes:
    """Raw s16le bytes from a base64 string; raises AudioError(`invalid_audio`)."""
    return pcm_check(b64decode_audio(data))


def pcm_check(pcm: bytes) -> bytes:
    if len(pcm) % 2:
        raise AudioError("invalid_audio", "PCM audio must be 16-bit samples (an even number of bytes).")
    return pcm


def pcm_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """int16 samples at `src_rate` → int16 at `dst_rate` (soxr, high quality)."""
    if src_rate == dst_rate or not len(samples):
        return samples.astype(np.int16, copy=False)
    import soxr

    out = soxr.resample(samples.astype(np.float32) / 32768.0, src_rate, dst_rate)
    return np.clip(out * 32768.0, -32768, 32767).astype(np.int16)


def decode_to_pcm(data: bytes, rate: int = PCM_RATE) -> bytes:
    """Any common container (wav, webm/opus, ogg, mp3, flac) → mono s16le at `rate`."""
    if not data:
        raise AudioError("empty_audio", "The audio is empty.")
    if data[:4] == b"RIFF":  # plain WAV: no ffmpeg process needed
        try:
            with wave.open(io.BytesIO(data)) as w:
                if w.getsampwidth() == 2:
                    samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
                    if w.getnchannels() > 1:
                        samples = samples.reshape(-1, w.getnchannels()).mean(axis=1).astype(np.int16)
                    return resample(samples, w.getframerate(), rate).tobytes()
        except (wave.Error, EOFError, ValueError):
            pass  # not a PCM WAV wave can read (float, compressed): let ffmpeg try
    from pydub import AudioSegment
    from pydub.exceptions import CouldntDecodeError

    try:
        segment = AudioSegment.from_file(io.BytesIO(data))
    except (CouldntDecodeError, IndexError, OSError, ValueError) as exc:
        raise AudioError("corrupt_audio", f"The audio could not be decoded: {str(exc).splitlines()[0][:200]}") from None
    return segment.set_channels(1).set_frame_rate(rate).set_sample_width(2).raw_data


def encode(pcm: bytes, rate: int, fmt: str) -> bytes:
    """s16le mono → wav, mp3 or ogg (opus) bytes."""
    if fmt == "wav":
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm)
        return buf.getvalue()
    from pydub import AudioSegment

    segment = AudioSegment(data=pcm, sample_width=2, frame_rate=rate, channels=1)
    buf = io.BytesIO()
    if fmt == "mp3":
        segment.export(buf, format="mp3", bitrate="64k")
    elif fmt == "ogg":
        segment.export(buf, format="ogg", codec="libopus", bitrate="32k")
    else:
        raise AudioError("unsupported_format", f"Unknown audio format {fmt!r}; use wav, mp3 or ogg.")
    return buf.getvalue()
