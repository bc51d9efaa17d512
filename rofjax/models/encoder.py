"""One encoder for RoFormer, RoFormerV2 and GAU-α; the variant is the `ModelConfig`.

    x = Embed(tokens) + Embed(segments)  → Norm and Dropout (order per family) → [Dense if embedding ≠ hidden]
    per layer, attention blocks:  x = Res(x, MHA) ; x = Res(x, FFN)        GAU blocks:  x = Res(x, GAU)
    Res(x, F) = Norm(x + Dropout(F(x)))            post-norm, residual_mode="plain"
              = Norm(x + α·Dropout(F(x)))          "alpha": α supplied per step, ramped 0 → 1 (kexue.fm 8620, 8998)
              = Norm(α_d·x + Dropout(F(x)))        "deepnorm"
              = x + [α·]Dropout(F(Norm(x)))        pre-norm, with a final Norm after the last layer

With `config.lst` set, the encoder returns the output of a Ladder Side-Tuning side network (`rofjax.models.ladder`,
parameters under "side") fed by the backbone's embeddings and layer outputs under `stop_gradient`.

Layers run under `nn.scan` (one compiled layer, stacked parameters with a leading "layers" axis) when
`scan_layers`, and under `nn.remat` with `remat_policy`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from rofjax.models.config import ModelConfig
from rofjax.models.initializers import kernel_initializer
from rofjax.models.ladder import SideNetwork, feeding_layers
from rofjax.nn.activations import get_activation
from rofjax.nn.attention import MultiHeadAttention, document_mask
from rofjax.nn.dense import dense
from rofjax.nn.dropout import Dropout
from rofjax.nn.embedding import TokenEmbedding, vocabulary_logits
from rofjax.nn.feedforward import FeedForward
from rofjax.nn.gau import GatedAttentionUnit
from rofjax.nn.norms import LayerNorm, RMSNorm

REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_with_no_batch_dims": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def dtypes(config: ModelConfig) -> dict:
    """The compute and storage dtypes every layer of `config`'s models takes."""
    return dict(dtype=jnp.dtype(config.dtype), param_dtype=jnp.dtype(config.param_dtype))


def make_norm(config: ModelConfig, name: str):
    norm = LayerNorm if config.norm_type == "layernorm" else RMSNorm
    return norm(epsilon=config.norm_epsilon, name=name, **dtypes(config))


class Embeddings(nn.Module):
    config: ModelConfig

    def setup(self):
        cfg = self.config
        init = nn.with_logical_partitioning(kernel_initializer(cfg), ("vocab", "embed"))
        size = cfg.resolved_embedding_size
        self.word_embeddings = TokenEmbedding(cfg.vocab_size, size, embedding_init=init, lookup=cfg.embedding_lookup,
                                              **dtypes(cfg))
        if cfg.type_vocab_size > 0:
            # A handful of rows: replicated, never split over the vocab (tensor) axis.
            segment_init = nn.with_logical_partitioning(kernel_initializer(cfg), (None, "embed"))
            self.token_type_embeddings = TokenEmbedding(cfg.type_vocab_size, size, embedding_init=segment_init,
                                                        lookup=cfg.embedding_lookup, **dtypes(cfg))
        if cfg.position_embedding == "absolute":
            position_init = nn.with_logical_partitioning(kernel_initializer(cfg), (None, "embed"))
            self.position_embeddings = TokenEmbedding(cfg.max_position_embeddings, size, embedding_init=position_init,
                                                      lookup=cfg.embedding_lookup, **dtypes(cfg))
        self.norm = make_norm(cfg, "norm")
        self.dropout = Dropout(cfg.dropout_rate)
        if size != cfg.hidden_size:
            self.mapping = dense(cfg.hidden_size, ("embed", "mlp"), name="mapping", use_bias=cfg.use_bias,
                                 kernel_init=kernel_initializer(cfg), **dtypes(cfg))

    def __call__(self, input_ids, segment_ids, deterministic: bool, positions=None):
        cfg = self.config
        x = self.word_embeddings(input_ids)
        if cfg.type_vocab_size > 0:
            x = x + self.token_type_embeddings(segment_ids)
        if cfg.position_embedding == "absolute":
            length = input_ids.shape[1]
            if length > cfg.max_position_embeddings:
                raise ValueError(f"{length} tokens exceed the {cfg.max_position_embeddings} learned positions of "
                                 f"this model (max_position_embeddings); shorten data.max_length.")
            if positions is None:
                positions = jnp.arange(length, dtype=jnp.int32)[None, :]
            x = x + self.position_embeddings(jnp.broadcast_to(positions, input_ids.shape))
        if cfg.dropout_before_embedding_norm:
            x = self.norm(self.dropout(x, deterministic=deterministic))
        else:
            x = self.dropout(self.norm(x), deterministic=deterministic)
        if cfg.resolved_embedding_size != cfg.hidden_size:
            x = self.mapping(x)
        return x

    def table(self):
        return self.word_embeddings.embedding


class EncoderLayer(nn.Module):
    """One attention+FFN block or one GAU block; `(x, _) → (x, None)` so that it can be scanned."""

    config: ModelConfig
    deterministic: bool = True
    max_documents: int | None = None
    emit: bool = False           # also return the output as the scanned "ys" (a side network reads them)

    def _residual(self, x, sublayer, norm_name: str, alpha):
        cfg = self.config
        norm = make_norm(cfg, norm_name)
        dropout = Dropout(cfg.dropout_rate)
        if cfg.norm_position == "pre":
            y = dropout(sublayer(norm(x)), deterministic=self.deterministic)
            return x + (alpha.astype(y.dtype) * y if cfg.residual_mode == "alpha" else y)
        y = dropout(sublayer(x), deterministic=self.deterministic)
        if cfg.residual_mode == "alpha":
            y = alpha.astype(y.dtype) * y
        elif cfg.residual_mode == "deepnorm":
            x = x * jnp.asarray(cfg.deepnorm_alpha, x.dtype)
        return norm(x + y)

    @nn.compact
    def __call__(self, x, mask, positions, alpha, doc_ids=None):
        cfg = self.config
        # Settings every attention, GAU and feed-forward layer of the block shares.
        common = dict(use_bias=cfg.use_bias, kernel_init=kernel_initializer(cfg), **dtypes(cfg))
        attention_common = dict(normalization=cfg.attention_normalization, attention_scale=cfg.attention_scale,
                                dropout_rate=cfg.attention_dropout_rate, rope=cfg.rope,
                                softmax_plus_min_length=cfg.softmax_plus_min_length, **common)
        if cfg.block_type == "attention":
            attention = MultiHeadAttention(
                num_heads=cfg.num_heads, head_size=cfg.resolved_head_size, key_size=cfg.resolved_key_size,
                rotary_value=cfg.rotary_value, use_rope=cfg.position_embedding == "rope",
                implementation=cfg.attention_implementation,
                fused_dropout=cfg.fused_attention_dropout, max_documents=self.max_documents, name="attention",
                **attention_common,
            )
            feedforward = FeedForward(cfg.intermediate_size, activation=cfg.hidden_act, name="feedforward", **common)
            x = self._residual(x, lambda h: attention(h, None if doc_ids is not None else mask, positions=positions,
                                                      doc_ids=doc_ids, deterministic=self.deterministic),
                               "attention_norm", alpha)
            x = self._residual(x, feedforward, "feedforward_norm", alpha)
        else:
            gau = GatedAttentionUnit(
                units=cfg.intermediate_size, key_size=cfg.resolved_key_size, activation=cfg.hidden_act,
                chunk_size=cfg.gau_chunk_size, name="gau", **attention_common,
            )
            gau_mask = document_mask(doc_ids) if doc_ids is not None else mask
            x = self._residual(x, lambda h: gau(h, gau_mask, positions=positions, deterministic=self.deterministic),
                               "gau_norm", alpha)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        return x, (x if self.emit else None)


class LayerStack(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x, mask, positions, alpha, deterministic: bool, doc_ids=None, max_documents=None,
                 keep: tuple[int, ...] = ()):
        """The last hidden states; with `keep`, also `{layer: its output}` for those layers (a side network's
        inputs)."""
        cfg = self.config
        kept = {}
        layer = EncoderLayer
        if cfg.remat_policy != "none":
            layer = nn.remat(layer, policy=REMAT_POLICIES[cfg.remat_policy], prevent_cse=not cfg.scan_layers)
        if cfg.scan_layers:
            scanned = nn.scan(
                layer, variable_axes={"params": 0, "intermediates": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
                length=cfg.num_layers, metadata_params={nn.PARTITION_NAME: "layers"},
            )
            x, outputs = scanned(cfg, deterministic=deterministic, max_documents=max_documents, emit=bool(keep),
                                 name="layers")(x, mask, positions, alpha, doc_ids)
            kept = {index: outputs[index] for index in keep}
        else:
            for index in range(cfg.num_layers):
                x, _ = layer(cfg, deterministic=deterministic, max_documents=max_documents,
                             name=f"layer_{index}")(x, mask, positions, alpha, doc_ids)
                if index in keep:
                    kept[index] = x
        if cfg.norm_position == "pre":
            x = make_norm(cfg, "final_norm")(x)
        return (x, kept) if keep else x


class MaskedLMHead(nn.Module):
    """RoFormer v1: Dense(E, act) → LayerNorm → tied embeddings + bias. RoFormerV2/GAU-α: tied, no bias."""

    config: ModelConfig

    @nn.compact
    def __call__(self, hidden, table, deterministic: bool = True):
        cfg = self.config
        size = cfg.resolved_embedding_size
        if cfg.mlm_head == "transform":
            h = dense(size, ("embed", "mlp"), name="dense", kernel_init=kernel_initializer(cfg),
                      **dtypes(cfg))(hidden)
            h = get_activation(cfg.hidden_act)(h)
            h = LayerNorm(epsilon=cfg.norm_epsilon, name="norm", **dtypes(cfg))(h)
        else:
            h = hidden
            if size != cfg.hidden_size:
                h = dense(size, ("embed", "mlp"), name="output_mapping", use_bias=False,
                          kernel_init=kernel_initializer(cfg), **dtypes(cfg))(h)
            h = Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
        logits = vocabulary_logits(h, table)
        if cfg.mlm_head == "transform":
            bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                              (cfg.vocab_size,), jnp.dtype(cfg.param_dtype))
            logits = logits + bias.astype(jnp.float32)
        return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))


class Encoder(nn.Module):
    """`Encoder(config).apply({"params": params}, input_ids, segment_ids)` → hidden states `[batch, length, hidden]`.

    Padding is token id `config.pad_token_id` (0). Other entry points: `mlm_logits(hidden)` (masked-LM head,
    params under "mlm"), `pool(hidden)` (BERT pooler on [CLS], params under "pooler"), and `masked_lm(...)`
    (both in one call, for `init`).
    """

    config: ModelConfig

    def setup(self):
        cfg = self.config
        self.embeddings = Embeddings(cfg)
        self.transformer = LayerStack(cfg)
        self.mlm = MaskedLMHead(cfg)
        self.pooler = dense(cfg.hidden_size, ("embed", "mlp"), name="pooler", kernel_init=kernel_initializer(cfg),
                            **dtypes(cfg))
        if cfg.lst != "none":
            self.side = SideNetwork(cfg)

    def __call__(self, input_ids, segment_ids=None, *, attention_mask=None, positions=None, doc_ids=None,
                 max_documents: int | None = None, deterministic: bool = True, residual_alpha=None):
        """`attention_mask`: `[batch, length]` key mask (default `input_ids != pad_token_id`; a right-padded
        prefix, as the fused kernels assume) or a full `[batch, 1, length, length]` mask. `doc_ids`: packed
        documents `[batch, length]` (1, 2, … contiguous; 0 = padding), attention stays inside each, at most
        `max_documents` per row (static; the fused kernel's segment count). `positions`: RoPE positions
        `[batch, length]` (default 0 … length−1). `residual_alpha`: α of `residual_mode="alpha"` (default 1)."""
        cfg = self.config
        input_ids = jnp.asarray(input_ids)
        if input_ids.ndim != 2:
            raise ValueError(f"Encoder expects input_ids [batch, length]; got shape {tuple(input_ids.shape)}.")
        if segment_ids is None:
            segment_ids = jnp.zeros_like(input_ids)
        elif jnp.shape(segment_ids) != input_ids.shape:
            raise ValueError(f"Encoder: segment_ids {tuple(jnp.shape(segment_ids))} must match input_ids "
                             f"{tuple(input_ids.shape)}.")
        if doc_ids is not None:
            if attention_mask is not None:
                raise ValueError("Encoder: pass either attention_mask or doc_ids, not both.")
            if jnp.shape(doc_ids) != input_ids.shape:
                raise ValueError(f"Encoder: doc_ids {tuple(jnp.shape(doc_ids))} must match input_ids "
                                 f"{tuple(input_ids.shape)}.")
            attention_mask = jnp.asarray(doc_ids) > 0
        elif attention_mask is None:
            attention_mask = input_ids != cfg.pad_token_id
        if positions is None:
            positions = jnp.arange(input_ids.shape[1], dtype=jnp.int32)[None, :]
        alpha = jnp.asarray(1.0 if residual_alpha is None else residual_alpha, jnp.float32)
        x = self.embeddings(input_ids, segment_ids, deterministic, positions)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        if cfg.lst == "none":
            return self.transformer(x, attention_mask, positions, alpha, deterministic, doc_ids, max_documents)
        # Ladder Side-Tuning: the backbone runs forward only; nothing of the side network's gradient reaches it.
        _, kept = self.transformer(x, attention_mask, positions, alpha, deterministic, doc_ids, max_documents,
                                   keep=feeding_layers(cfg))
        kept = {layer: jax.lax.stop_gradient(h) for layer, h in kept.items()}
        return self.side(jax.lax.stop_gradient(x), kept, attention_mask if doc_ids is None else None, positions,
                         alpha, deterministic=deterministic, doc_ids=doc_ids)

    def _backbone_only(self, what: str):
        if self.config.lst != "none":
            raise ValueError(f"{what} belongs to the frozen backbone and reads its hidden states; a Ladder "
                             f"Side-Tuning model (lst={self.config.lst!r}) returns the side network's. Use pooling "
                             f"'cls' or 'mean'.")

    def mlm_logits(self, hidden, *, deterministic: bool = True):
        self._backbone_only("The masked-LM head")
        return self.mlm(hidden, self.embeddings.table(), deterministic)

    def pool(self, hidden):
        self._backbone_only("The BERT pooler (pooling='pooler')")
        return jnp.tanh(self.pooler(hidden[:, 0]))

    def masked_lm(self, input_ids, segment_ids=None, *, deterministic: bool = True, **kwargs):
        hidden = self(input_ids, segment_ids, deterministic=deterministic, **kwargs)
        return self.mlm_logits(hidden, deterministic=deterministic)
