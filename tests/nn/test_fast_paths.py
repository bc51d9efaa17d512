"""Accelerator fast paths against their reference: dense-gradient row lookups, packed-document masks, cuDNN.

The GPU cases run where JAX has a GPU (`JAX_PLATFORMS=cuda python -m pytest tests/nn/test_fast_paths.py`) and
are skipped elsewhere; everything else runs on CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from rofjax.models import Encoder, get_preset
from rofjax.nn.attention import MultiHeadAttention, cudnn_attention, document_mask, segment_layout
from rofjax.nn.embedding import gather_positions, take_rows

on_gpu = pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU")
# The splash cases run the TPU kernel through the Pallas interpreter against float32 XLA attention on 8 simulated
# host devices; on a GPU the reference would run in TF32 and the mesh would have one device.
on_cpu = pytest.mark.skipif(jax.default_backend() != "cpu", reason="Pallas-interpreter cases run on CPU")


def _take_reference(table, ids, upstream):
    """Forward `table[ids]` and the gradient of `sum(table[ids] * upstream)` in float64."""
    table64 = table.astype(np.float64)
    grad = np.zeros_like(table64)
    np.add.at(grad, ids.reshape(-1), upstream.reshape(-1, table.shape[1]).astype(np.float64))
    return table64[ids], grad


@pytest.mark.parametrize("method", ["gather", "one_hot"])
def test_take_rows_forward_and_gradient_match_float64(rng, method):
    table = rng.normal(size=(37, 6)).astype(np.float32)
    ids = rng.integers(0, 37, size=(4, 9))
    ids[0, :4] = 5                                               # repeated ids must add up
    upstream = rng.normal(size=(4, 9, 6)).astype(np.float32)
    forward, gradient = _take_reference(table, ids, upstream)
    got = take_rows(jnp.asarray(table), jnp.asarray(ids), method=method)
    np.testing.assert_array_equal(np.asarray(got), forward.astype(np.float32))
    grad = jax.jit(jax.grad(lambda t: jnp.sum(take_rows(t, ids, method=method) * upstream)))(jnp.asarray(table))
    np.testing.assert_allclose(np.asarray(grad), gradient, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cast_inside", [True, False])
def test_take_rows_bf16_gradient_accumulates_in_float32(rng, cast_inside):
    # Cast inside, the backward is a bf16 matmul (DEFAULT precision) with float32 accumulation; outside, a float32
    # one at HIGHEST. Both must give the float32 sum of 300 bf16 cotangents.
    table = rng.normal(size=(11, 4)).astype(np.float32)
    ids = np.full((1, 300), 3)                                   # 300 equal rows: a bf16 running sum would drift
    upstream = rng.normal(size=(1, 300, 4)).astype(np.float32)
    _, gradient = _take_reference(table, ids, upstream.astype(jnp.bfloat16).astype(np.float32))

    def loss(t):
        if cast_inside:
            rows = take_rows(t, ids, method="one_hot", dtype=jnp.bfloat16)
        else:
            rows = take_rows(t, ids, method="one_hot").astype(jnp.bfloat16)
        return jnp.sum(rows * jnp.asarray(upstream, jnp.bfloat16))

    grad = jax.grad(loss)(jnp.asarray(table))
    assert grad.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(grad)[3], gradient[3], rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_vocabulary_logits_and_gradients_match_float64(rng, dtype):
    from rofjax.nn.embedding import vocabulary_logits

    with jax.default_matmul_precision("float32"):        # float32 products on a GPU too, not TF32
        _check_vocabulary_logits(rng, dtype, vocabulary_logits)


def _check_vocabulary_logits(rng, dtype, vocabulary_logits):
    hidden = jnp.asarray(rng.normal(size=(2, 3, 8)), dtype)
    table = rng.normal(size=(50, 8)).astype(np.float32)
    upstream = rng.normal(size=(2, 3, 50)).astype(np.float32)
    h64 = np.asarray(hidden, np.float64)
    w64 = np.asarray(jnp.asarray(table, dtype), np.float64)          # the table as the compute dtype sees it
    # Under bf16 compute the backward takes the cotangent in bf16 (float32 sums of exact products).
    g64 = np.asarray(jnp.asarray(upstream, dtype), np.float64)
    logits, pullback = jax.vjp(vocabulary_logits, hidden, jnp.asarray(table))
    d_hidden, d_table = pullback(jnp.asarray(upstream))
    assert logits.dtype == jnp.float32 and d_hidden.dtype == hidden.dtype and d_table.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(logits), h64 @ w64.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(d_table), g64.reshape(-1, 50).T @ h64.reshape(-1, 8), rtol=1e-5,
                               atol=1e-5)
    expected_d_hidden = g64 @ w64
    if dtype == "bfloat16":
        expected_d_hidden = np.asarray(jnp.asarray(expected_d_hidden, jnp.bfloat16), np.float64)
    np.testing.assert_allclose(np.asarray(d_hidden, np.float64), expected_d_hidden, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["gather", "one_hot"])
def test_gather_positions_matches_take_along_axis(rng, method):
    hidden = rng.normal(size=(3, 10, 5)).astype(np.float32)
    positions = rng.integers(0, 10, size=(3, 4))
    positions[1, :2] = 7
    upstream = rng.normal(size=(3, 4, 5)).astype(np.float32)
    got = gather_positions(jnp.asarray(hidden), jnp.asarray(positions), method=method)
    np.testing.assert_array_equal(np.asarray(got), np.take_along_axis(hidden, positions[..., None], 1))
    grad = jax.grad(lambda h: jnp.sum(gather_positions(h, positions, method=method) * upstream))(jnp.asarray(hidden))
    expected = np.zeros_like(hidden, dtype=np.float64)
    for b in range(3):
        np.add.at(expected[b], positions[b], upstream[b].astype(np.float64))
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-6, atol=1e-6)


def test_embedding_lookups_give_the_same_encoder_gradient(rng):
    ids = jnp.asarray(rng.integers(1, 1000, size=(2, 12)))
    grads = {}
    for lookup in ("gather", "one_hot"):
        model = Encoder(get_preset("roformer_v2_tiny", embedding_lookup=lookup))
        params = nn.unbox(model.init(jax.random.key(0), ids, method=Encoder.masked_lm))["params"]
        loss = lambda p, model=model: jnp.sum(model.apply({"params": p}, ids, method=Encoder.masked_lm) ** 2)
        grads[lookup] = jax.grad(loss)(params)
    table = ("embeddings", "word_embeddings", "embedding")
    pick = lambda g: g[table[0]][table[1]][table[2]]
    np.testing.assert_allclose(np.asarray(pick(grads["one_hot"])), np.asarray(pick(grads["gather"])),
                               rtol=1e-5, atol=1e-6)


def test_segment_layout_lists_each_document(rng):
    doc_ids = np.array([[1, 1, 1, 2, 2, 3, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0]])
    lengths, offsets = segment_layout(jnp.asarray(doc_ids), 4)
    np.testing.assert_array_equal(np.asarray(lengths), [[3, 2, 1, -1], [8, -1, -1, -1], [-1, -1, -1, -1]])
    np.testing.assert_array_equal(np.asarray(offsets), [[0, 3, 5, -1, -1], [0, -1, -1, -1, -1],
                                                        [-1, -1, -1, -1, -1]])


def test_document_mask_keeps_attention_inside_documents():
    doc_ids = np.array([[1, 1, 2, 0]])
    mask = np.asarray(document_mask(jnp.asarray(doc_ids)))[0, 0]
    expected = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(mask, expected)


def test_doc_ids_equal_an_explicit_document_mask(rng):
    doc_ids = jnp.asarray([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 1]])
    ids = jnp.asarray(rng.integers(1, 1000, size=(2, 6)))
    model = Encoder(get_preset("roformer_v2_tiny"))
    params = model.init(jax.random.key(0), ids)
    by_ids = model.apply(params, ids, doc_ids=doc_ids, max_documents=2)
    by_mask = model.apply(params, ids, attention_mask=document_mask(doc_ids))
    np.testing.assert_array_equal(np.asarray(by_ids), np.asarray(by_mask))


def test_encoder_rejects_doc_ids_with_a_mask(rng):
    ids = jnp.ones((1, 4), jnp.int32)
    model = Encoder(get_preset("roformer_v2_tiny"))
    params = model.init(jax.random.key(0), ids)
    with pytest.raises(ValueError, match="either attention_mask or doc_ids"):
        model.apply(params, ids, doc_ids=jnp.ones((1, 4), jnp.int32), attention_mask=jnp.ones((1, 4), bool))


def test_cudnn_request_off_gpu_fails_clearly(rng):
    if jax.default_backend() == "gpu":
        pytest.skip("a GPU is present")
    x = jnp.asarray(rng.normal(size=(1, 8, 16)), jnp.bfloat16)
    layer = MultiHeadAttention(num_heads=2, head_size=8, implementation="cudnn", dtype=jnp.bfloat16)
    with pytest.raises(Exception):   # noqa: B017 (JAX's own message: cuDNN is not present)
        layer.init(jax.random.key(0), x)


# GPU ------------------------------------------------------------------------------------------------------------
def _qkv(rng, batch, length, heads, dim):
    make = lambda: jnp.asarray(rng.normal(size=(batch, length, heads, dim)), jnp.bfloat16)
    return make(), make(), make()


def _relative_error(got, expected, where=None):
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    if where is not None:
        got, expected = got[where], expected[where]
    return np.linalg.norm(got - expected) / np.linalg.norm(expected)


@on_gpu
def test_cudnn_padding_matches_reference(rng):
    q, k, v = _qkv(rng, 4, 128, 4, 64)
    lengths = np.array([128, 70, 1, 0])
    key_mask = np.arange(128)[None, :] < lengths[:, None]

    def reference(q, k, v):
        from rofjax.nn.attention import attention_normalize

        logits = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32)) / 8.0
        weights = attention_normalize(logits, key_mask[:, None, None, :], "softmax")
        return jnp.einsum("bhqk,bkhd->bqhd", weights, v.astype(jnp.float32))

    got = jax.jit(lambda q, k, v: cudnn_attention(q, k, v, scale=1 / 8.0, key_mask=key_mask))(q, k, v)
    assert np.all(np.isfinite(np.asarray(got, np.float32)))
    assert _relative_error(got, reference(q, k, v)) < 1e-2
    assert np.all(np.asarray(got)[3] == 0)                    # no valid key: zeros, as the reference
    g_ref = jax.grad(lambda q, k, v: jnp.sum(reference(q, k, v) ** 2), argnums=(0, 1, 2))(q, k, v)
    g = jax.grad(lambda q, k, v: jnp.sum(cudnn_attention(q, k, v, scale=1 / 8.0, key_mask=key_mask)
                                         .astype(jnp.float32) ** 2), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g, g_ref):
        assert _relative_error(a, b) < 2e-2


@on_gpu
def test_cudnn_packed_documents_match_reference(rng):
    q, k, v = _qkv(rng, 2, 128, 2, 64)
    doc_ids = np.zeros((2, 128), np.int32)
    doc_ids[0, :50], doc_ids[0, 50:90], doc_ids[0, 90:120] = 1, 2, 3
    doc_ids[1, :] = 1

    def reference(q, k, v):
        return jax.nn.dot_product_attention(q, k, v, mask=document_mask(doc_ids), scale=0.125,
                                            implementation="xla")

    got = jax.jit(lambda q, k, v: cudnn_attention(q, k, v, scale=0.125, doc_ids=doc_ids, max_documents=4))(q, k, v)
    expected = reference(q, k, v)
    valid = doc_ids > 0
    assert np.all(np.isfinite(np.asarray(got, np.float32)))
    assert _relative_error(got, expected, valid) < 1e-2
    assert np.all(np.asarray(got)[~valid] == 0)


@on_gpu
@pytest.mark.parametrize("packed", [False, True])
def test_cudnn_encoder_loss_matches_xla(rng, packed):
    ids = jnp.asarray(rng.integers(1, 12000, size=(4, 256)), jnp.int32)
    kwargs = {}
    if packed:
        doc_ids = np.repeat(np.arange(1, 5), 64)[None].repeat(4, 0)
        doc_ids[1, 200:] = 0
        kwargs = {"doc_ids": jnp.asarray(doc_ids), "max_documents": 4}
    else:
        ids = ids.at[1, 100:].set(0)
    outputs = {}
    for implementation in ("xla", "cudnn"):
        config = get_preset("roformer_v2_chinese_char_small", dtype="bfloat16",
                            attention_implementation=implementation)
        model = Encoder(config)
        params = model.init(jax.random.key(0), ids[:, :8])
        outputs[implementation] = jax.jit(lambda p, model=model: model.apply(p, ids, **kwargs))(params)
    valid = np.asarray(kwargs["doc_ids"] > 0) if packed else np.asarray(ids != 0)
    assert _relative_error(outputs["cudnn"], outputs["xla"], valid) < 2e-2


@on_gpu
def test_cudnn_fused_dropout_draws_new_masks_and_keeps_the_mean(rng):
    q, k, v = _qkv(rng, 2, 256, 4, 64)
    v = jnp.ones_like(v)                       # every output is then the sum of the kept, rescaled weights
    step = jax.jit(lambda q, k, v: cudnn_attention(q, k, v, scale=0.125, dropout_rate=0.1, dropout_seed=7))
    first, second = np.asarray(step(q, k, v), np.float32), np.asarray(step(q, k, v), np.float32)
    assert not np.array_equal(first, second), "cuDNN dropout repeated its mask on the next call"
    assert abs(first.mean() - 1.0) < 0.02


@on_gpu
def test_cudnn_fused_dropout_gradient_runs_in_a_jitted_step():
    # In its own process: inside full training steps (jax 0.11.2, H100) XLA aborted the process at a CHECK in
    # cuda_dnn.cc as soon as the cuDNN kernel dropped attention weights; an abort here must fail this test, not pytest.
    import subprocess
    import sys
    import textwrap

    program = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np
        from rofjax.nn.attention import cudnn_attention
        rng = np.random.default_rng(0)
        q, k, v = (jnp.asarray(rng.normal(size=(2, 256, 4, 64)), jnp.bfloat16) for _ in range(3))
        mask = jnp.arange(256)[None, :] < jnp.array([[256], [100]])
        loss = lambda q, k, v: jnp.sum(cudnn_attention(q, k, v, scale=0.125, key_mask=mask, dropout_rate=0.1,
                                                       dropout_seed=3).astype(jnp.float32) ** 2)
        grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)
        assert all(np.isfinite(np.asarray(g, np.float32)).all() for g in grads)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


@on_gpu
def test_cudnn_attention_runs_inside_scanned_layers(rng):
    ids = jnp.asarray(rng.integers(1, 1000, size=(2, 128)), jnp.int32)
    config = get_preset("roformer_v2_tiny", dtype="bfloat16", scan_layers=True, attention_implementation="cudnn",
                        hidden_size=128, num_heads=2)
    model = Encoder(config)
    params = model.init(jax.random.key(0), ids)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(model.apply(p, ids).astype(jnp.float32) ** 2)))(params)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree_util.tree_leaves(grads))


@on_gpu
@pytest.mark.parametrize("packed", [False, True])
def test_cudnn_attention_layer_equals_xla_on_every_row_including_those_with_no_key(rng, packed):
    # With padding lengths the layer sets cuDNN's rows without a valid key after its output projection (to the bias
    # alone); tokens outside packed documents are zeroed before it. Either way: the reference's values and gradients.
    from tests import numpy_reference as ref

    x = jnp.asarray(rng.normal(size=(3, 128, 128)), jnp.bfloat16)
    kwargs, key_mask = {}, None
    if packed:
        doc_ids = np.zeros((3, 128), np.int32)
        doc_ids[0, :60], doc_ids[0, 60:100] = 1, 2
        doc_ids[1, :] = 1
        kwargs = {"doc_ids": jnp.asarray(doc_ids)}
        empty = doc_ids == 0
    else:
        lengths = np.array([128, 50, 0])
        key_mask = jnp.asarray(np.arange(128)[None, :] < lengths[:, None])
        empty = np.broadcast_to((lengths == 0)[:, None], (3, 128))
    outputs, grads = {}, {}
    for implementation in ("xla", "cudnn"):
        # The reference is the explicit softmax (`attention_normalize`: a row with no valid key is zeros).
        layer = MultiHeadAttention(num_heads=2, head_size=64, implementation=implementation, dtype=jnp.bfloat16,
                                   max_documents=4 if packed else None, use_fused_softmax=implementation != "xla")
        params = ref.randomize(layer.init(jax.random.key(0), x), np.random.default_rng(1), scale=0.1)
        run = jax.jit(lambda p, x, layer=layer: layer.apply(p, x, key_mask, **kwargs))
        outputs[implementation] = np.asarray(run(params, x), np.float32)
        grads[implementation] = jax.jit(jax.grad(lambda p, x, run=run: jnp.sum(run(p, x).astype(jnp.float32) ** 2),
                                                 argnums=(0, 1)))(params, x)
    bias = np.asarray(jnp.asarray(params["params"]["o_dense"]["bias"], jnp.bfloat16), np.float32)
    assert np.array_equal(outputs["cudnn"][empty], np.broadcast_to(bias, outputs["cudnn"][empty].shape))
    assert np.array_equal(outputs["cudnn"][empty], outputs["xla"][empty])
    assert _relative_error(outputs["cudnn"], outputs["xla"]) < 2e-2
    for a, b in zip(jax.tree_util.tree_leaves(grads["cudnn"]), jax.tree_util.tree_leaves(grads["xla"])):
        assert _relative_error(a, b) < 3e-2


# TPU splash attention, run by the Pallas interpreter on CPU --------------------------------------------------------
def _splash_case(rng, doc_ids=None, key_mask=None):
    x = jnp.asarray(rng.normal(size=(2, 128, 32)), jnp.float32)
    outputs = {}
    for implementation in ("xla", "splash"):
        layer = MultiHeadAttention(num_heads=2, head_size=16, implementation=implementation, interpret_kernels=True)
        params = layer.init(jax.random.key(0), x)
        outputs[implementation] = np.asarray(layer.apply(params, x, key_mask, doc_ids=doc_ids))
    return outputs


@on_cpu
def test_splash_attention_with_padding_matches_reference(rng):
    key_mask = np.arange(128)[None, :] < np.array([[128], [77]])
    outputs = _splash_case(rng, key_mask=key_mask)
    np.testing.assert_allclose(outputs["splash"][key_mask], outputs["xla"][key_mask], rtol=2e-4, atol=2e-5)
    assert np.all(outputs["splash"][~key_mask] == 0)


@on_cpu
def test_splash_attention_with_packed_documents_matches_reference(rng):
    doc_ids = np.zeros((2, 128), np.int32)
    doc_ids[0, :40], doc_ids[0, 40:100] = 1, 2
    doc_ids[1, :] = 1
    outputs = _splash_case(rng, doc_ids=jnp.asarray(doc_ids))
    valid = doc_ids > 0
    np.testing.assert_allclose(outputs["splash"][valid], outputs["xla"][valid], rtol=2e-4, atol=2e-5)


def test_auto_picks_splash_for_a_tpu_mesh_cudnn_on_gpu_and_nothing_on_cpu():
    from rofjax.nn.attention import fused_implementation

    expected = {"cpu": None, "gpu": "cudnn"}[jax.default_backend()]   # this machine, no mesh
    assert fused_implementation("auto", jnp.bfloat16) == expected
    assert fused_implementation("auto", jnp.float32) is None
    assert fused_implementation("xla", jnp.bfloat16) is None
    assert fused_implementation("splash", jnp.float32) == "splash"
    with pytest.raises(ValueError, match="attention implementation 'flash'"):
        fused_implementation("flash", jnp.bfloat16)


@on_cpu
def test_splash_attention_runs_per_shard_under_a_mesh(rng):
    from rofjax.parallel.mesh import create_mesh, sharding_context

    x = jnp.asarray(rng.normal(size=(4, 128, 32)), jnp.float32)
    key_mask = np.arange(128)[None, :] < np.array([[128], [90], [128], [5]])
    outputs = {}
    for implementation in ("xla", "splash"):
        layer = MultiHeadAttention(num_heads=2, head_size=16, implementation=implementation, interpret_kernels=True)
        params = layer.init(jax.random.key(0), x)
        with sharding_context(create_mesh(2, 2, 2, devices=jax.devices()[:8])):
            outputs[implementation] = np.asarray(jax.jit(lambda p, x, layer=layer: layer.apply(p, x, key_mask))(
                params, x))
    np.testing.assert_allclose(outputs["splash"][key_mask], outputs["xla"][key_mask], rtol=2e-4, atol=2e-5)


def test_auto_row_lookup_follows_the_mesh_platform_not_the_host():
    """A step compiled ahead of time for a TPU slice or a GPU on a CPU host takes the accelerator's embedding
    gradient (one-hot matmul), not the host's scatter."""
    from jax._src.mesh import AbstractDevice
    from jax.sharding import AbstractMesh

    from rofjax.nn.embedding import resolve_lookup

    assert resolve_lookup("auto") == {"cpu": "gather"}.get(jax.default_backend(), "one_hot")
    for platform, expected in (("tpu", "one_hot"), ("gpu", "one_hot"), ("cpu", "gather")):
        mesh = AbstractMesh((1,), ("data",), abstract_device=AbstractDevice(device_kind=platform, num_cores=None,
                                                                            platform=platform))
        with jax.sharding.use_abstract_mesh(mesh):
            assert resolve_lookup("auto") == expected, platform
    assert resolve_lookup("gather") == "gather"
