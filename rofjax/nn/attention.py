"""Attention normalisation variants and multi-head self-attention with RoPE.

`attention_normalize` turns (scaled) logits `b_ij` and a key mask `m_j` into attention weights (kexue.fm 9105 §7.4,
8823, 8934):

    softmax         a_ij = m_j e^{b_ij} / Σ_k m_k e^{b_ik}
    softmax_plus    softmax_j(b_ij · log(l_i) / log 512),  l_i = Σ_k m_k   (entropy-invariant softmax, GAU-α)
    squared_relu    a_ij = m_j relu(b_ij)² / l_i                          (FLASH/GAU)
    l2              a_ij = m_j e^{b_ij} / sqrt(Σ_k m_k e^{2 b_ik})
    no_denominator  a_ij = m_j e^{b_ij}
    swish_l2        a_ij = m_j swish(b_ij) / sqrt(Σ_k m_k swish(b_ik)²)

Rows of `softmax`/`softmax_plus` sum to one, which is what makes a relative-position Transformer unable to tell
positions apart on a constant input (post 9105); the other methods do not have that property.
"""

from __future__ import annotations

import functools
import math
import zlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rofjax.nn.dense import DenseParams, dense
from rofjax.nn.dropout import Dropout
from rofjax.nn.platform import target_platform
from rofjax.nn.rope import RopeOptions

Dtype = Any
Initializer = Any

NORMALIZATIONS: tuple[str, ...] = ("softmax", "softmax_plus", "squared_relu", "l2", "no_denominator", "swish_l2")
SOFTMAX_PLUS_BASE_LENGTH = 512


def _validity(logits, mask, what: str = "attention_normalize"):
    """Broadcast `mask` (key mask `[..., k_len]` or full `[..., q_len, k_len]`) to a bool array like `logits`.

    A logit that is already `-inf` counts as masked too.
    """
    valid = logits != -jnp.inf
    if mask is None:
        return valid
    mask = jnp.asarray(mask)
    if mask.ndim == logits.ndim - 1:
        if mask.shape[-1] != logits.shape[-1]:
            raise ValueError(
                f"{what}: key mask of shape {tuple(mask.shape)} does not match logits of shape "
                f"{tuple(logits.shape)} (the mask's last axis must be k_len={logits.shape[-1]})."
            )
        mask = mask[..., None, :]
    elif mask.ndim != logits.ndim:
        raise ValueError(
            f"{what}: mask must have shape [..., k_len] or [..., q_len, k_len]; got mask of shape "
            f"{tuple(mask.shape)} for logits of shape {tuple(logits.shape)}."
        )
    try:
        broadcast = jnp.broadcast_shapes(mask.shape, logits.shape)
    except ValueError:
        broadcast = None
    if broadcast != tuple(logits.shape):
        raise ValueError(
            f"{what}: mask of shape {tuple(mask.shape)} does not broadcast to logits of shape "
            f"{tuple(logits.shape)}."
        )
    return valid & mask.astype(bool)


def _masked_exp(logits, valid):
    """`e^{b − max b}` on valid entries, 0 elsewhere; the max is over valid entries and carries no gradient."""
    row_max = jnp.max(jnp.where(valid, logits, -jnp.inf), axis=-1, keepdims=True)
    row_max = jax.lax.stop_gradient(jnp.where(jnp.isfinite(row_max), row_max, 0.0))
    # The inner where keeps masked entries (possibly huge or inf) out of exp, so their gradient is 0, not NaN.
    return jnp.where(valid, jnp.exp(jnp.where(valid, logits - row_max, 0.0)), 0.0)


def _safe_divide(numerator, denominator):
    return numerator / jnp.where(denominator > 0, denominator, 1.0)


def attention_normalize(logits, mask=None, method: str = "softmax", *, softmax_plus_min_length: int | None = None,
                        softmax_plus_base_length: int = SOFTMAX_PLUS_BASE_LENGTH):
    """Normalise attention logits `[..., q_len, k_len]` over the last axis.

    `mask` is a bool key mask `[..., k_len]` (True = a real token) or a full mask `[..., q_len, k_len]`; `None`
    means every key is valid. Masked keys get weight exactly 0, and a row with no valid key is all zeros. The
    arithmetic is float32; the result has the dtype of `logits`.

    `softmax_plus_min_length=16` reproduces bert4keras ≥ 0.11.5, which floors `l` at 16; the default (no floor) is
    the behaviour GAU-α was trained with.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"Unknown attention normalisation method={method!r}; expected one of {NORMALIZATIONS}.")
    logits = jnp.asarray(logits)
    if logits.ndim < 2:
        raise ValueError(f"attention_normalize expects logits [..., q_len, k_len]; got shape {tuple(logits.shape)}.")
    b = logits.astype(jnp.float32)
    valid = _validity(b, mask)
    length = jnp.maximum(jnp.sum(valid, axis=-1, keepdims=True).astype(jnp.float32), 1.0)

    if method in ("softmax", "softmax_plus"):
        if method == "softmax_plus":
            if softmax_plus_min_length is not None:
                length = jnp.maximum(length, float(softmax_plus_min_length))
            b = b * (jnp.log(length) / math.log(softmax_plus_base_length))
        e = _masked_exp(b, valid)
        weights = _safe_divide(e, jnp.sum(e, axis=-1, keepdims=True))
    elif method == "squared_relu":
        weights = jnp.where(valid, jnp.square(jax.nn.relu(jnp.where(valid, b, 0.0))), 0.0) / length
    elif method == "l2":
        e = _masked_exp(b, valid)
        weights = _safe_divide(e, jnp.sqrt(jnp.sum(jnp.square(e), axis=-1, keepdims=True)))
    elif method == "no_denominator":
        weights = jnp.where(valid, jnp.exp(jnp.where(valid, b, 0.0)), 0.0)
    else:  # swish_l2
        s = jnp.where(valid, jax.nn.silu(jnp.where(valid, b, 0.0)), 0.0)
        norm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(s), axis=-1, keepdims=True), jnp.finfo(jnp.float32).tiny))
        weights = s / norm
    return weights.astype(logits.dtype)


def attention_mask_4d(mask, batch: int, q_len: int, k_len: int, what: str):
    """A key mask `[batch, k_len]` or a full mask `[batch, heads|1, q_len, k_len]` as a 4-D bool mask."""
    if mask is None:
        return None
    mask = jnp.asarray(mask).astype(bool)
    if mask.ndim == 2:
        if mask.shape != (batch, k_len) and mask.shape != (1, k_len):
            raise ValueError(f"{what}: key mask must have shape [batch, length] = [{batch}, {k_len}]; got "
                             f"{tuple(mask.shape)}.")
        return mask[:, None, None, :]
    if mask.ndim == 4 and mask.shape[-2:] == (q_len, k_len) and mask.shape[0] in (1, batch):
        return mask
    raise ValueError(f"{what}: mask must be [batch, length] or [batch, heads|1, q_len, k_len] with batch={batch}, "
                     f"q_len={q_len}, k_len={k_len}; got {tuple(mask.shape)}.")


ATTENTION_IMPLEMENTATIONS: tuple[str, ...] = ("auto", "xla", "cudnn", "splash")


def document_mask(doc_ids):
    """`[batch, 1, length, length]` mask of packed documents: a query sees the keys of its own document
    (`doc_ids` 1, 2, …; 0 = padding, which sees nothing)."""
    doc_ids = jnp.asarray(doc_ids)
    return (doc_ids[:, None, :, None] == doc_ids[:, None, None, :]) & (doc_ids[:, None, None, :] > 0)


def segment_layout(doc_ids, max_documents: int):
    """cuDNN's packed layout of contiguous documents `1 … max_documents` (0 = padding) in each row: per-row
    document lengths `[batch, M]` and start offsets `[batch, M + 1]`, −1 where a row has fewer documents."""
    doc_ids = jnp.asarray(doc_ids)
    member = doc_ids[:, :, None] == jnp.arange(1, max_documents + 1, dtype=doc_ids.dtype)[None, None, :]
    lengths = jnp.sum(member, axis=1, dtype=jnp.int32)
    starts = jnp.argmax(member, axis=1).astype(jnp.int32)
    present = lengths > 0
    filler = jnp.full((doc_ids.shape[0], 1), -1, jnp.int32)
    return (jnp.where(present, lengths, -1),
            jnp.concatenate([jnp.where(present, starts, -1), filler], axis=1))


def _cudnn_module():
    # The packed (several documents per row) and dropout forms of cuDNN attention are only reachable through
    # JAX's cuDNN module; `jax.nn.dot_product_attention` exposes padding lengths alone.
    from jax._src.cudnn import fused_attention_stablehlo

    return fused_attention_stablehlo


def cudnn_attention(q, k, v, *, scale: float, key_mask=None, doc_ids=None, max_documents: int | None = None,
                    dropout_rate: float = 0.0, dropout_seed: int = 0, zero_empty_rows: bool = True):
    """cuDNN flash attention, `[batch, length, heads, dim]` in and out, with padding given as lengths.

    `key_mask` `[batch, length]` must be a right-padded prefix (what every rofjax pipeline produces);
    `doc_ids` are contiguous packed documents. Rows with no valid key come out as zeros, as in
    `attention_normalize`; `zero_empty_rows=False` leaves them as the kernel wrote them, for a caller that
    zeroes them later (`cudnn_valid_rows` says which): finite with padding lengths, not computed (they can be
    NaN) outside packed documents. Raises `NotImplementedError` where cuDNN cannot run the shapes or dtypes.
    """
    batch, length = q.shape[:2]
    if doc_ids is not None:
        if not max_documents:
            raise ValueError("cudnn_attention: packed documents need a static max_documents.")
        cudnn = _cudnn_module()
        seqlen, offsets = segment_layout(doc_ids, max_documents)
        # The kernel's backward writes no dq/dk/dv for tokens outside every document: whatever the buffers held
        # there (NaN, on an H200) would reach the projections' weight gradients. Selecting q, k and v here makes
        # the backward select zeros there instead; the forward values inside documents are unchanged.
        inside = cudnn_valid_rows(batch, doc_ids=doc_ids)[:, :, None, None]
        q, k, v = (jnp.where(inside, t, jnp.zeros_like(t)) for t in (q, k, v))
        out = cudnn.dot_product_attention(q, k, v, q_seqlen=seqlen, kv_seqlen=seqlen, q_offsets=offsets,
                                          kv_offsets=offsets, scale=scale, mask_type=cudnn.MaskType.PADDING,
                                          dropout_rate=dropout_rate, seed=dropout_seed)
        if not zero_empty_rows:
            return out
        return jnp.where(inside, out, jnp.zeros_like(out))
    if key_mask is None:
        lengths = jnp.full((batch,), length, jnp.int32)
    else:
        lengths = jnp.sum(jnp.asarray(key_mask).astype(jnp.int32), axis=-1).astype(jnp.int32)
        lengths = jnp.broadcast_to(lengths, (batch,))
    safe_lengths = jnp.maximum(lengths, 1)
    if dropout_rate > 0:
        cudnn = _cudnn_module()
        out = cudnn.dot_product_attention(q, k, v, q_seqlen=jnp.full((batch,), length, jnp.int32),
                                          kv_seqlen=safe_lengths, scale=scale, mask_type=cudnn.MaskType.PADDING,
                                          dropout_rate=dropout_rate, seed=dropout_seed)
    else:
        out = jax.nn.dot_product_attention(q, k, v, scale=scale, key_value_seq_lengths=safe_lengths,
                                           implementation="cudnn")
    if not zero_empty_rows:
        return out
    valid = cudnn_valid_rows(batch, key_mask=key_mask)
    return jnp.where(valid[:, :, None, None], out, jnp.zeros_like(out))


def cudnn_valid_rows(batch: int, *, key_mask=None, doc_ids=None):
    """Which query rows of `cudnn_attention` have a valid key, broadcastable to `[batch, length]`: tokens of a
    document (`doc_ids > 0`), or every row of a sequence with at least one unmasked key."""
    if doc_ids is not None:
        return jnp.asarray(doc_ids) > 0
    if key_mask is None:
        return jnp.ones((batch, 1), bool)
    lengths = jnp.sum(jnp.asarray(key_mask).astype(jnp.int32), axis=-1)
    return jnp.broadcast_to(lengths, (batch,))[:, None] > 0


def splash_attention(q, k, v, *, scale: float, key_mask=None, doc_ids=None, interpret: bool = False):
    """TPU splash attention (Pallas), `[batch, length, heads, dim]` in and out; padding and packed documents are
    segment ids. Valid rows equal the reference; padding rows come out as zeros. Under a mesh the kernel runs per
    shard (`shard_map`: batch over the rules' batch axes, heads over theirs). Raises `NotImplementedError` where the
    length is not a multiple of the kernel's 128-token blocks."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as splash_mask
    from jax.sharding import PartitionSpec

    batch, length, heads, _ = q.shape
    if length % 128:
        raise NotImplementedError(f"splash attention needs a length that is a multiple of 128; got {length}.")
    if doc_ids is not None:
        segments = jnp.asarray(doc_ids).astype(jnp.int32)
    elif key_mask is not None:
        segments = jnp.broadcast_to(jnp.asarray(key_mask), (batch, length)).astype(jnp.int32)
    else:
        segments = jnp.ones((batch, length), jnp.int32)

    def local(q, k, v, segments):
        local_heads = q.shape[2]
        kernel = splash.make_splash_mha(
            mask=splash_mask.MultiHeadMask([splash_mask.FullMask((length, length))] * local_heads),
            head_shards=1, q_seq_shards=1, interpret=interpret)
        to_heads = lambda t: jnp.swapaxes(t, 1, 2)            # [b, l, h, d] → [b, h, l, d]
        out = jax.vmap(lambda q, k, v, s: kernel(q, k, v, segment_ids=splash.SegmentIds(q=s, kv=s)))(
            to_heads(q * jnp.asarray(scale, q.dtype)), to_heads(k), to_heads(v), segments)
        return jnp.swapaxes(out, 1, 2)

    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        out = local(q, k, v, segments)
    else:
        batch_axes, _, head_axes, _ = nn.logical_to_mesh_axes(("batch", "length", "heads", "kv"))
        qkv_spec = PartitionSpec(batch_axes, None, head_axes, None)
        out = jax.shard_map(local, mesh=mesh, in_specs=(qkv_spec, qkv_spec, qkv_spec,
                                                        PartitionSpec(batch_axes, None)),
                            out_specs=qkv_spec, check_vma=False)(q, k, v, segments)
    return jnp.where((segments > 0)[:, :, None, None], out, jnp.zeros_like(out))


def fused_implementation(implementation: str, dtype) -> str | None:
    """Which fused kernel `implementation` asks for here: `cudnn`/`splash` as named; `auto`: cuDNN on a GPU with
    bf16/fp16 compute, splash on a TPU; None: no fused kernel (XLA's attention)."""
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"Unknown attention implementation {implementation!r}; expected one of "
                         f"{ATTENTION_IMPLEMENTATIONS}.")
    if implementation in ("cudnn", "splash"):
        return implementation
    if implementation == "xla":
        return None
    platform = target_platform()
    if platform == "tpu":
        return "splash"
    if platform == "gpu" and jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
        return "cudnn"
    return None


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention as bert4keras `MultiHeadAttention` with `p_bias='rotary'`.

    Sub-layers `q_dense`, `k_dense` (`heads × key_size`), `v_dense` (`heads × head_size`) and `o_dense`; RoPE on
    q and k (and v when `rotary_value`), logits scaled by `1/√key_size`, then `attention_normalize`.

    Plain softmax goes through a fused kernel unless `use_fused_softmax=False`: cuDNN flash attention where
    `implementation` resolves to it (`auto`: a GPU with bf16/fp16 compute), padding passed as lengths and packed
    documents (`doc_ids`) as cuDNN segments; splash attention (Pallas) on TPU, padding and documents as segment ids;
    `jax.nn.dot_product_attention` otherwise. Active attention dropout
    takes the explicit path (the bert4keras mask on the weights), unless `fused_dropout`: then the cuDNN kernel
    drops the weights itself with its own random stream (same rate, different masks).
    """

    num_heads: int
    head_size: int
    key_size: int | None = None
    out_features: int | None = None
    use_bias: bool = True
    normalization: str = "softmax"
    attention_scale: bool = True
    dropout_rate: float = 0.0
    use_rope: bool = True
    rope: RopeOptions = RopeOptions()
    rotary_value: bool = False
    softmax_plus_min_length: int | None = None
    use_fused_softmax: bool = True
    implementation: str = "auto"
    fused_dropout: bool = False
    max_documents: int | None = None
    interpret_kernels: bool = False          # run Pallas kernels in interpret mode (tests of the TPU path on CPU)
    kernel_init: Initializer = nn.initializers.glorot_uniform()
    bias_init: Initializer = nn.initializers.zeros
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    def _joint_projection(self, x):
        """q, k and v `[batch, length, heads, size]` from one matmul against the three kernels interleaved per head.

        The values are those of three separate projections; the gradient is what changes form. Its input part is
        one matmul over the joint `[q|k|v]` cotangent (contracting heads × 3 × size) instead of three matmuls
        whose outputs are summed, and the RoPE backward fuses into the building of that cotangent, which the
        weight gradient reads too: on a GPU this removes a pass over dq/dk and the sum of the partial input
        gradients from every layer's backward (`benchmarks/hlo_traffic.py`). The joint axis is heads-major, so a
        `tensor` split of the heads stays a contiguous split of it, and the bias stays a vector that the GPU
        matmul adds in its epilogue."""
        features = x.shape[-1]
        heads, size = self.num_heads, self.head_size
        params = [DenseParams(heads * size, ("embed", "heads"), use_bias=self.use_bias, kernel_init=self.kernel_init,
                              bias_init=self.bias_init, param_dtype=self.param_dtype, name=name)(features)
                  for name in ("q_dense", "k_dense", "v_dense")]
        kernel = jnp.stack([k.reshape(features, heads, size) for k, _ in params], axis=2)
        kernel = kernel.reshape(features, heads * 3 * size)                               # [embed, (h, 3, s)]
        bias = None
        if self.use_bias:
            bias = jnp.stack([b.reshape(heads, size) for _, b in params], axis=1).reshape(heads * 3 * size)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        joint = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
        if bias is not None:
            joint = joint + bias
        joint = joint.reshape(x.shape[:-1] + (heads, 3, size))
        return joint[..., 0, :], joint[..., 1, :], joint[..., 2, :]

    @nn.compact
    def __call__(self, x, mask=None, *, positions=None, doc_ids=None, deterministic: bool = True):
        """`x` `[batch, length, embed]`; `mask` a key mask `[batch, length]` or `[batch, heads|1, length, length]`;
        `doc_ids` `[batch, length]` packed documents (1, 2, …; 0 = padding), in place of `mask`."""
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"Unknown attention normalization={self.normalization!r}; expected one of "
                             f"{NORMALIZATIONS}.")
        if x.ndim != 3:
            raise ValueError(f"MultiHeadAttention expects x [batch, length, embed]; got shape {tuple(x.shape)}.")
        batch, length, features = x.shape
        key_size = self.key_size or self.head_size
        if doc_ids is not None and mask is not None:
            raise ValueError("MultiHeadAttention: pass either mask or doc_ids, not both.")
        mask4 = attention_mask_4d(document_mask(doc_ids) if doc_ids is not None else mask, batch, length, length,
                                  "MultiHeadAttention")

        layer = functools.partial(dense, use_bias=self.use_bias, kernel_init=self.kernel_init,
                                  bias_init=self.bias_init, dtype=self.dtype, param_dtype=self.param_dtype)

        def projection(size: int, name: str):
            # Kernels are 2-D (`[embed, heads·size]`, head-major) as in bert4keras and Hugging Face checkpoints; a
            # `tensor` split of the fused axis falls on head boundaries whenever it divides the number of heads.
            out = layer(self.num_heads * size, ("embed", "heads"), name=name)(x)
            return out.reshape(out.shape[:-1] + (self.num_heads, size))

        if key_size == self.head_size:
            q, k, v = self._joint_projection(x)
        else:
            q, k = projection(key_size, "q_dense"), projection(key_size, "k_dense")
            v = projection(self.head_size, "v_dense")
        if self.use_rope:
            q, k = self.rope.rotate(q, positions), self.rope.rotate(k, positions)
            if self.rotary_value:
                v = self.rope.rotate(v, positions)
        q, k, v = (nn.with_logical_constraint(t, ("batch", "length", "heads", "kv")) for t in (q, k, v))
        scale = 1.0 / math.sqrt(key_size) if self.attention_scale else 1.0

        dropout_active = self.dropout_rate > 0 and not deterministic
        fusable = self.use_fused_softmax and self.normalization == "softmax" and key_size == self.head_size
        # Asking for the `intermediates` collection asks for the attention weights, which only the explicit path
        # forms; the fused kernels compute the same output without them.
        fusable = fusable and not self.is_mutable_collection("intermediates")
        kernel = fused_implementation(self.implementation, q.dtype) if fusable else None
        padding_only = doc_ids is not None or mask is None or jnp.ndim(mask) == 2
        out = None
        valid_rows = None      # rows the fused kernel leaves unzeroed although they have no valid key
        try:
            if kernel == "cudnn" and (self.fused_dropout or not dropout_active) and padding_only:
                # Padding as lengths: every row the kernel writes is finite (an empty sequence attends to its
                # first key), so its empty rows are set after the projection, below. Tokens outside every packed
                # document are not computed by the kernel (their rows may hold anything): they are zeroed before
                # the projection, the form measured correct on an H200.
                key_mask = mask if doc_ids is None else None
                out = cudnn_attention(
                    q, k, v, scale=scale, key_mask=key_mask, doc_ids=doc_ids,
                    max_documents=self.max_documents or length,
                    dropout_rate=self.dropout_rate if dropout_active else 0.0,
                    # cuDNN takes its seed at compile time; the module path at least varies it by layer.
                    dropout_seed=zlib.crc32("/".join(self.scope.path).encode()) & 0x7FFFFFFF,
                    zero_empty_rows=doc_ids is not None)
                if doc_ids is None:
                    valid_rows = cudnn_valid_rows(batch, key_mask=key_mask)
            elif kernel == "splash" and not dropout_active and padding_only:
                out = splash_attention(q, k, v, scale=scale, key_mask=mask if doc_ids is None else None,
                                       doc_ids=doc_ids, interpret=self.interpret_kernels)
        except NotImplementedError:
            if self.implementation != "auto":
                raise
        if out is None and fusable and not dropout_active:
            out = jax.nn.dot_product_attention(q, k, v, mask=mask4, scale=scale)
            if mask4 is not None:
                # Its masked logits are a large negative number, not −inf: a row with no valid key would average
                # every value instead of being zero as in `attention_normalize`.
                has_key = jnp.any(mask4, axis=-1)                                  # [batch|1, heads|1, q]
                if has_key.shape[1] == 1:
                    valid_rows = jnp.broadcast_to(has_key[:, 0], (batch, length))
                else:
                    keep = jnp.transpose(has_key, (0, 2, 1))[..., None]            # [batch|1, q, heads, 1]
                    out = jnp.where(keep, out, jnp.zeros_like(out))
        if out is None:
            logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
            weights = attention_normalize(logits, mask4, self.normalization,
                                          softmax_plus_min_length=self.softmax_plus_min_length)
            self.sow("intermediates", "attention_weights", weights)
            if dropout_active:
                weights = Dropout(self.dropout_rate)(weights, deterministic=False)
            out = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v)

        out = out.reshape(batch, length, self.num_heads * self.head_size)
        output_layer = layer(self.out_features or features, ("heads", "embed"), name="o_dense")
        projected = output_layer(out)
        if valid_rows is not None:
            # A row with no valid key attends to nothing: its output is 0 and its projection the bias alone. Set
            # here, the choice fuses into the residual sum that reads the projection; zeroing the kernel's output
            # cost a pass over it forward and one over its gradient (0.4 ms of a RoFormerV2-base step, H200).
            empty_row = jnp.zeros_like(projected)
            if self.use_bias:
                empty_row = empty_row + nn.unbox(output_layer.variables["params"]["bias"]).astype(projected.dtype)
            projected = jnp.where(valid_rows[:, :, None], projected, empty_row)
        return nn.with_logical_constraint(projected, ("batch", "length", "embed"))
