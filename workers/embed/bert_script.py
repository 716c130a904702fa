"""The query encoder's forward pass (workers/embed/query.py) as one TorchScript graph.

Run eagerly, one sentence is ~100 small torch calls, and each hands the GIL back and waits to take it
again. In a worker whose other threads are busy (a server engine's `llm` worker streams many turns in
threads) every wait can last up to the interpreter's switch interval: with 20 busy threads one query
took 5.6 s p50 eagerly against 125 ms as this graph, which gives the GIL up once for the whole pass.
Quiet, it is a little faster too (5.3 ms against 5.8). Same weights, same vectors (in float32; with
`low_precision` each matmul runs in bfloat16, its vectors within cosine 0.9999 of float32's).

torch 2.13 marks `torch.jit.script` deprecated (for torch.compile and torch.export, which compile C++
at start or ahead of time). It is still there and tested; should a later torch drop it, building the
encoder fails, `BertQueryEncoder.build` logs why and queries go through sentence-transformers.
Several queries asked at once (workers/embed/engine.py) go through the same graph as one padded batch:
one pass, and one release of the GIL, for all of them.
"""

import warnings
from typing import Optional

import torch
import torch.nn.functional as F

# Known (above), and not worth a warning at every worker start. Set once at import: catch_warnings
# around the call would swap the process's filters while other threads may be warning.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=DeprecationWarning)


class BertQuery(torch.nn.Module):
    """BERT (absolute positions, GELU) over one sentence's token ids (or a padded batch's), mean-pooled
    and normalised.

    Holds references to the loaded model's tensors, and fuses each layer's query, key and value weights
    into one matmul (+5 MB for MiniLM).
    """

    def __init__(self, bert, low_precision: torch.dtype | None = None):
        super().__init__()
        embeddings, layers = bert.embeddings, bert.encoder.layer
        self.word = embeddings.word_embeddings.weight.detach()
        self.position = embeddings.position_embeddings.weight.detach()
        self.token_type = embeddings.token_type_embeddings.weight[0].detach()
        self.norm = [embeddings.LayerNorm.weight.detach(), embeddings.LayerNorm.bias.detach()]
        self.eps, self.heads = float(bert.config.layer_norm_eps), int(bert.config.num_attention_heads)
        weights: list[list[torch.Tensor]] = []
        for layer in layers:
            attention, output, own = layer.attention.output, layer.output, layer.attention.self
            weights.append(
                [
                    t.detach()
                    for t in (
                        torch.cat([own.query.weight, own.key.weight, own.value.weight]),
                        torch.cat([own.query.bias, own.key.bias, own.value.bias]),
                        attention.dense.weight,
                        attention.dense.bias,
                        attention.LayerNorm.weight,
                        attention.LayerNorm.bias,
                        layer.intermediate.dense.weight,
                        layer.intermediate.dense.bias,
                        output.dense.weight,
                        output.dense.bias,
                        output.LayerNorm.weight,
                        output.LayerNorm.bias,
                    )
                ]
            )
        # Each matmul in `low_precision` (bfloat16: its weights, and its input cast to them); the rest
        # (biases, norms, residuals, attention) in float32
        self.low = low_precision is not None
        self.dtype = low_precision if low_precision is not None else torch.float32
        if low_precision is not None:
            weights = [[t.to(low_precision) if i in (0, 2, 6, 8) else t for i, t in enumerate(w)] for w in weights]
        self.weights = weights

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """One sentence's token ids -> its vector."""
        return F.normalize(self._layers(ids.unsqueeze(0), None)[0].mean(0), dim=0)

    @torch.jit.export
    def batch(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Several sentences' token ids, right-padded to one length (`mask` True on their own tokens) ->
        their vectors: padding neither attended to nor pooled, so each is its sentence's alone."""
        x = self._layers(ids, mask[:, None, None, :])
        keep = mask.unsqueeze(-1).to(x.dtype)
        return F.normalize((x * keep).sum(1) / keep.sum(1), dim=1)

    def _layers(self, ids: torch.Tensor, attend: Optional[torch.Tensor]) -> torch.Tensor:  # noqa: UP045 - TorchScript
        b, n = ids.size(0), ids.size(1)
        x = self.word[ids] + self.position[:n] + self.token_type
        width = [x.size(-1)]
        x = F.layer_norm(x, width, self.norm[0], self.norm[1], self.eps)
        for w in self.weights:
            qkv = self._linear(x, w[0], w[1]).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attend)
            attended = attended.transpose(1, 2).reshape(b, n, -1)
            x = F.layer_norm(self._linear(attended, w[2], w[3]) + x, width, w[4], w[5], self.eps)
            hidden = F.gelu(self._linear(x, w[6], w[7]))
            x = F.layer_norm(self._linear(hidden, w[8], w[9]) + x, width, w[10], w[11], self.eps)
        return x

    def _linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """A layer's matmul: in float32 as transformers runs it, or in the weights' lower precision with
        its result widened back to float32 before the bias."""
        if self.low:
            return F.linear(x.to(self.dtype), weight).float() + bias
        return F.linear(x, weight, bias)


def scripted(bert, low_precision: torch.dtype | None = None) -> torch.jit.ScriptModule:
    """`bert` (a transformers BertModel) as one scripted forward pass over a sentence's token ids (and
    `batch` over several, padded); with `low_precision` (torch.bfloat16), its matmuls read weights of
    that type (half the bytes)."""
    return torch.jit.script(BertQuery(bert, low_precision))
