"""One sentence through a BERT encoder, without sentence-transformers' machinery: the retrieval a turn does.

A turn embeds one short line before it can build its prompt. Through sentence-transformers and
transformers 5 that costs ~7 ms on this CPU for 7-12 tokens, of which ~3 ms is per-call machinery
(feature dicts, padding, mask building, attention dispatch); the same weights here take ~4 ms.
It covers only the layout all-MiniLM-L6-v2 has (BertModel with absolute positions and GELU, mean
pooling, normalisation), reuses the loaded model's weights and is checked against `encode` when it
is built: any other model, or any difference, and the query goes through sentence-transformers (a
bfloat16 encoder is held to a cosine instead, and falls back to float32's).
Memories and re-embedding jobs always do; several turns' queries asked at once take the same pass
as one padded batch (`many`). The pass runs as one TorchScript graph (bert_script.py), which takes
the GIL once a pass instead of once a torch call.
"""

import copy
import logging

import numpy as np

from apps.core.errors import EngineConfigError

log = logging.getLogger(__name__)

# Checked against sentence-transformers at load: short, ordinary, and one past max_seq_length.
PROBES = ["hi", "Where do I live, and what did I tell you about my sister's cat?", "a long line " * 200]
TOLERANCE = 1e-5  # in float32: the largest difference in any dimension
# In bfloat16 the vectors move by ~1e-3 a dimension; each probe's must still point where float32's does
# (0.99997-0.99999 for MiniLM: a memory's similarity moves by less than 1e-4, its rank not at all).
LOW_PRECISION_MIN_COSINE = 0.9999
PRECISIONS = ("auto", "float32", "bfloat16")


class BertQueryEncoder:
    def __init__(self, model, low_precision=None):
        from workers.embed.bert_script import scripted

        bert = model[0].auto_model
        self.device = next(bert.parameters()).device
        self.tokenizer = copy.deepcopy(model.tokenizer.backend_tokenizer)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(model.max_seq_length)
        self.precision = str(low_precision or "torch.float32").removeprefix("torch.")
        # one graph that gives up the GIL once a sentence (bert_script.py says why)
        self.forward = scripted(bert, low_precision)

    @classmethod
    def build(cls, model, precision: str = "auto") -> "BertQueryEncoder | None":
        """An encoder for `model` if it has the supported layout and gives `model.encode`'s vectors, else None.

        `precision`: the matmuls' weights in bfloat16 (half the bytes to read: a turn's query after
        the user's pause took 6.3 ms against 10.3 in float32 on a CPU with AVX512-BF16), float32, or
        `auto`: bfloat16 where the CPU computes it natively, float32 elsewhere (emulated, bfloat16 is
        slower). A bfloat16 encoder that does not point where float32's does falls back to float32.
        """
        if precision not in PRECISIONS:
            raise EngineConfigError(f"EMBED_QUERY_PRECISION must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
        reason = cls._unsupported(model)
        if reason is None:
            try:
                expected = model.encode(
                    PROBES, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
                )
            except Exception as exc:  # noqa: BLE001 - e.g. a tokenizer without a fast backend: the slow path works
                expected, reason = None, f"{exc.__class__.__name__}: {exc}"
            for low in cls._precisions(model, precision) if expected is not None else []:
                try:
                    fast = cls(model, low)
                    got = [fast(text) for text in PROBES] + list(fast.many(PROBES))
                    expected_all = np.concatenate([expected, expected])
                except Exception as exc:  # noqa: BLE001 - this precision cannot run here: the next one may
                    reason = f"{exc.__class__.__name__}: {exc}"
                    log.warning("single-sentence queries in %s: %s", low or "float32", reason)
                    continue
                if low is None:
                    worst = max(float(np.abs(v - want).max()) for v, want in zip(got, expected_all, strict=True))
                    if worst <= TOLERANCE:
                        return fast
                    reason = f"differs from sentence-transformers by {worst:.2g}"
                else:
                    cosine = min(float(v @ want) for v, want in zip(got, expected_all, strict=True))
                    if cosine >= LOW_PRECISION_MIN_COSINE:
                        return fast
                    log.warning("%s queries point away from float32's (cosine %.5f): float32", fast.precision, cosine)
        log.info("single-sentence queries go through sentence-transformers: %s", reason)
        return None

    @staticmethod
    def _precisions(model, precision: str) -> list:
        """The weights' types to try, in order (None: float32), for a model of the supported layout."""
        import torch

        def cpu_has(name: str) -> bool:  # torch's own CPU probes (private: absent in another torch, read as no)
            return bool(getattr(torch.cpu, name, lambda: False)())

        on_cpu = next(model[0].auto_model.parameters()).device.type == "cpu"
        native = on_cpu and (cpu_has("_is_avx512_bf16_supported") or cpu_has("_is_amx_tile_supported"))
        if precision == "bfloat16" or (precision == "auto" and native):
            return [torch.bfloat16, None]
        return [None]

    @staticmethod
    def _unsupported(model) -> str | None:
        try:
            from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
        except ImportError:  # sentence-transformers before 6
            from sentence_transformers.models import Normalize, Pooling, Transformer

        modules = list(model)
        if (
            len(modules) != 3
            or not isinstance(modules[0], Transformer)
            or not isinstance(modules[1], Pooling)
            or not isinstance(modules[2], Normalize)
        ):
            return "not a Transformer, Pooling, Normalize model"
        config = modules[0].auto_model.config
        if (
            config.model_type != "bert"
            or getattr(config, "position_embedding_type", "absolute") != "absolute"
            or config.hidden_act != "gelu"
            or getattr(modules[1], "pooling_mode", None) != "mean"
        ):
            return "not BERT with absolute positions, GELU and mean pooling"
        if getattr(modules[0], "do_lower_case", False):
            return "lower-cases outside its tokenizer"
        return None

    def __call__(self, text: str) -> np.ndarray:
        import torch

        with torch.inference_mode():
            ids = torch.tensor(self.tokenizer.encode(text).ids, device=self.device)
            return self.forward(ids).float().cpu().numpy()

    def many(self, texts: list[str]) -> np.ndarray:
        """Several sentences' vectors in one pass (right-padded, masked): each as `self(text)` gives it,
        to float error."""
        import torch

        ids = [encoding.ids for encoding in self.tokenizer.encode_batch(texts)]
        width = max(len(one) for one in ids)
        padded = torch.zeros((len(ids), width), dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.bool)
        for row, one in enumerate(ids):
            padded[row, : len(one)], mask[row, : len(one)] = torch.tensor(one), True
        with torch.inference_mode():
            return self.forward.batch(padded.to(self.device), mask.to(self.device)).float().cpu().numpy()
