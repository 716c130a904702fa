"""One sentence through a BERT encoder, without sentence-transformers' machinery: the retrieval a turn does.

A turn embeds one short line before it can build its prompt. Through sentence-transformers and
transformers 5 that costs ~7 ms on this CPU for 7-12 tokens, of which ~3 ms is per-call machinery
(feature dicts, padding, mask building, attention dispatch); the same weights here take ~4 ms.
It covers only the layout all-MiniLM-L6-v2 has (BertModel with absolute positions and GELU, mean
pooling, normalisation), reuses the loaded model's weights and is checked against `encode` when it
is built: any other model, or any difference, and the query goes through sentence-transformers.
Batches (memories, re-embedding jobs) always do. The pass runs as one TorchScript graph
(bert_script.py), which takes the GIL once a sentence instead of once a torch call.
"""

import copy
import logging

import numpy as np

log = logging.getLogger(__name__)

# Checked against sentence-transformers at load: short, ordinary, and one past max_seq_length.
PROBES = ["hi", "Where do I live, and what did I tell you about my sister's cat?", "a long line " * 200]
TOLERANCE = 1e-5


class BertQueryEncoder:
    def __init__(self, model):
        from workers.embed.bert_script import scripted

        bert = model[0].auto_model
        self.device = next(bert.parameters()).device
        self.tokenizer = copy.deepcopy(model.tokenizer.backend_tokenizer)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(model.max_seq_length)
        self.forward = scripted(bert)  # one graph that gives up the GIL once a sentence (bert_script.py says why)

    @classmethod
    def build(cls, model) -> "BertQueryEncoder | None":
        """An encoder for `model` if it has the supported layout and gives `model.encode`'s vectors, else None."""
        reason = cls._unsupported(model)
        if reason is None:
            try:
                fast = cls(model)
                expected = model.encode(
                    PROBES, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
                )
                worst = max(float(np.abs(fast(text) - want).max()) for text, want in zip(PROBES, expected, strict=True))
            except Exception as exc:  # noqa: BLE001 - e.g. a tokenizer without a fast backend: the slow path works
                worst, reason = None, f"{exc.__class__.__name__}: {exc}"
            if worst is not None and worst <= TOLERANCE:
                return fast
            reason = reason or f"differs from sentence-transformers by {worst:.2g}"
        log.info("single-sentence queries go through sentence-transformers: %s", reason)
        return None

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
