"""Task models: an `Encoder` (params under "encoder") plus a head, bert4keras style.

* `MaskedLM`: the encoder's own MLM head (v1: transform + norm + tied + bias; v2/GAU-α: tied, bias-free).
* `SequenceClassifier`: [CLS] vector (or the BERT pooler, or the mean over real tokens) → Dense(num_labels). CLUE recipes feed pairs with all
  segment ids 0, as the authors did.
* `TokenClassifier`: Dense(num_labels) on every token.
* `SpanClassifier`: GlobalPointer or Efficient GlobalPointer logits `[batch, heads, n, n]`.
* `MultipleChoice`: `[batch, choices, length]` → one score per choice from the [CLS] vector.

Head kernels use the encoder's initialiser (bert4keras passes `kernel_initializer=base.initializer`), except
GlobalPointer heads, whose bert4keras default is LeCun normal (`head_initializer="lecun"`). GlobalPointer heads
rotate with the encoder's RoPE options (`config.rope`): bert4keras gives them the same sinusoid as its encoders
(base 10000, interleaved pairs), so a model whose RoPE differs takes its heads along.
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
from flax import linen as nn

from rofjax.models.config import ModelConfig
from rofjax.models.encoder import Encoder, dtypes
from rofjax.models.initializers import kernel_initializer
from rofjax.nn.dense import dense
from rofjax.nn.dropout import Dropout
from rofjax.nn.global_pointer import EfficientGlobalPointer, GlobalPointer


def _linear_head(config: ModelConfig, x, features: int, name: str, dropout_rate: float, deterministic: bool):
    """Dropout, then `Dense(features)` with the encoder's initialiser; float32 scores. Label axes are small and
    replicated."""
    x = Dropout(dropout_rate)(x, deterministic=deterministic)
    head = dense(features, ("embed", None), name=name, kernel_init=kernel_initializer(config), **dtypes(config))
    return head(x).astype(jnp.float32)


class MaskedLM(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, input_ids, segment_ids=None, *, deterministic: bool = True, **encoder_kwargs):
        return Encoder(self.config, name="encoder").masked_lm(input_ids, segment_ids, deterministic=deterministic,
                                                              **encoder_kwargs)


class SequenceClassifier(nn.Module):
    config: ModelConfig
    num_labels: int
    pooling: Literal["cls", "pooler", "mean"] = "cls"
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, input_ids, segment_ids=None, *, deterministic: bool = True, **encoder_kwargs):
        if self.pooling not in ("cls", "pooler", "mean"):
            raise ValueError(f"SequenceClassifier pooling={self.pooling!r}; expected 'cls', 'pooler' or 'mean'.")
        encoder = Encoder(self.config, name="encoder")
        hidden = encoder(input_ids, segment_ids, deterministic=deterministic, **encoder_kwargs)
        if self.pooling == "mean":
            valid = (jnp.asarray(input_ids) != self.config.pad_token_id)[..., None].astype(hidden.dtype)
            pooled = jnp.sum(hidden * valid, axis=1) / jnp.maximum(jnp.sum(valid, axis=1), 1)
        else:
            pooled = encoder.pool(hidden) if self.pooling == "pooler" else hidden[:, 0]
        return _linear_head(self.config, pooled, self.num_labels, "classifier", self.dropout_rate, deterministic)


class TokenClassifier(nn.Module):
    config: ModelConfig
    num_labels: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, input_ids, segment_ids=None, *, deterministic: bool = True, **encoder_kwargs):
        hidden = Encoder(self.config, name="encoder")(input_ids, segment_ids, deterministic=deterministic,
                                                      **encoder_kwargs)
        return _linear_head(self.config, hidden, self.num_labels, "classifier", self.dropout_rate, deterministic)


class SpanClassifier(nn.Module):
    """GlobalPointer (`efficient=False`) or Efficient GlobalPointer over the encoder's hidden states."""

    config: ModelConfig
    heads: int
    head_size: int = 64
    efficient: bool = True
    use_rope: bool = True
    use_bias: bool = True
    tril_mask: bool = True
    head_initializer: Literal["lecun", "encoder"] = "lecun"

    @nn.compact
    def __call__(self, input_ids, segment_ids=None, *, span_mask=None, deterministic: bool = True,
                 **encoder_kwargs):
        """`span_mask` `[batch, n]` (default: the real tokens) marks the positions a span may start or end at —
        cmrc2018 keeps the question out of its answers while the encoder still reads it."""
        hidden = Encoder(self.config, name="encoder")(input_ids, segment_ids, deterministic=deterministic,
                                                      **encoder_kwargs)
        init = nn.initializers.lecun_normal() if self.head_initializer == "lecun" else kernel_initializer(self.config)
        pointer = EfficientGlobalPointer if self.efficient else GlobalPointer
        mask = span_mask if span_mask is not None else encoder_kwargs.get("attention_mask")
        if mask is None or jnp.ndim(mask) != 2:
            mask = jnp.asarray(input_ids) != self.config.pad_token_id
        return pointer(heads=self.heads, head_size=self.head_size, use_rope=self.use_rope, use_bias=self.use_bias,
                       tril_mask=self.tril_mask, rope=self.config.rope, kernel_init=init, name="pointer",
                       **dtypes(self.config))(hidden, mask)


class MultipleChoice(nn.Module):
    """Scores `[batch, choices]` for inputs `[batch, choices, length]` (c3, chid): Dense(1) on each [CLS]."""

    config: ModelConfig
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, input_ids, segment_ids=None, *, deterministic: bool = True):
        input_ids = jnp.asarray(input_ids)
        if input_ids.ndim != 3:
            raise ValueError(f"MultipleChoice expects input_ids [batch, choices, length]; got shape "
                             f"{tuple(input_ids.shape)}.")
        batch, choices, length = input_ids.shape
        flat_segments = None if segment_ids is None else jnp.reshape(segment_ids, (batch * choices, length))
        hidden = Encoder(self.config, name="encoder")(input_ids.reshape(batch * choices, length), flat_segments,
                                                      deterministic=deterministic)
        scores = _linear_head(self.config, hidden[:, 0], 1, "scorer", self.dropout_rate, deterministic)
        return scores.reshape(batch, choices)


class GPLinker(nn.Module):
    """GPLinker heads over one encoder (kexue.fm 8888, 8926), all Efficient GlobalPointers.

    * events: `spans` = argument classes (RoPE, i ≤ j) and one head–head and one tail–tail link pointer (no RoPE,
      upper triangle: links are undirected);
    * relations: `spans` = 2 (subject, object) and `links` = #predicates head and tail pointers (no RoPE, no
      triangle mask: a subject may come after its object).

    Returns `(span_logits [b, spans, n, n], head_logits [b, links, n, n], tail_logits [b, links, n, n])`.
    """

    config: ModelConfig
    spans: int
    links: int = 1
    head_size: int = 64
    link_tril_mask: bool = True

    @nn.compact
    def __call__(self, input_ids, segment_ids=None, *, deterministic: bool = True, **encoder_kwargs):
        hidden = Encoder(self.config, name="encoder")(input_ids, segment_ids, deterministic=deterministic,
                                                      **encoder_kwargs)
        mask = jnp.asarray(input_ids) != self.config.pad_token_id
        common = dict(head_size=self.head_size, rope=self.config.rope, kernel_init=nn.initializers.lecun_normal(),
                      **dtypes(self.config))
        spans = EfficientGlobalPointer(heads=self.spans, use_rope=True, tril_mask=True, name="spans",
                                       **common)(hidden, mask)
        heads = EfficientGlobalPointer(heads=self.links, use_rope=False, tril_mask=self.link_tril_mask,
                                       name="head_links", **common)(hidden, mask)
        tails = EfficientGlobalPointer(heads=self.links, use_rope=False, tril_mask=self.link_tril_mask,
                                       name="tail_links", **common)(hidden, mask)
        return spans, heads, tails
