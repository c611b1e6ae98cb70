"""Attention is softmax(Q K^T / sqrt(d_k)) V, per head, with the layer's own weights."""

import numpy as np

from transformer_tf.model import scaled_dot_product_attention
from transformer_tf.model.attention import one_position_attention


def test_attention_is_softmax_qk_over_sqrt_dk_times_v():
    rng = np.random.default_rng(0)
    q, k, v = (
        rng.normal(size=shape).astype(np.float32)
        for shape in [(2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)]
    )
    mask = np.zeros((2, 1, 1, 6), np.float32)
    mask[1, ..., 4:] = 1.0
    output, weights = scaled_dot_product_attention(q, k, v, mask)

    logits = q @ np.swapaxes(k, -1, -2) / np.sqrt(8.0) + mask * -1e9
    expected_weights = np.exp(logits - logits.max(-1, keepdims=True))
    expected_weights /= expected_weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights.numpy(), expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(output.numpy(), expected_weights @ v, rtol=1e-5, atol=1e-5)


def test_one_position_attention_of_grouped_rows_is_each_rows_attention():
    # 2 sentences, 3 hypotheses each, sharing their sentence's keys and values (beam search)
    rng = np.random.default_rng(2)
    q = rng.normal(size=(6, 4, 1, 8)).astype(np.float32)
    k, v = (rng.normal(size=(2, 4, 5, 8)).astype(np.float32) for _ in range(2))
    mask = np.zeros((2, 1, 1, 5), np.float32)
    mask[1, ..., 3:] = 1.0
    output, weights = one_position_attention(q, k, v, mask, group=3)

    each = [np.repeat(x, 3, axis=0) for x in (k, v, mask)]
    expected_output, expected_weights = scaled_dot_product_attention(q, *each)
    np.testing.assert_allclose(weights.numpy(), expected_weights.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(output.numpy(), expected_output.numpy(), rtol=1e-5, atol=1e-5)
    ungrouped_output, ungrouped_weights = one_position_attention(q, *each)  # group 1
    np.testing.assert_allclose(ungrouped_weights.numpy(), expected_weights.numpy(), atol=1e-6)
    np.testing.assert_allclose(ungrouped_output.numpy(), expected_output.numpy(), atol=1e-5)


def test_multi_head_attention_matches_numpy_with_the_layer_weights(model):
    mha = model.decoder.dec_layers[0].cross_attention
    rng = np.random.default_rng(1)
    query = rng.normal(size=(1, 3, 32)).astype(np.float32)
    memory = rng.normal(size=(1, 4, 32)).astype(np.float32)
    output, weights = mha(query, memory, memory)

    def project(x, dense):
        kernel, bias = (w.numpy() for w in dense.weights)
        return (x @ kernel + bias).reshape(1, -1, 4, 8).transpose(0, 2, 1, 3)

    q, k, v = project(query, mha.wq), project(memory, mha.wk), project(memory, mha.wv)
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(8.0)
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-4, atol=1e-6)
    heads = (expected @ v).transpose(0, 2, 1, 3).reshape(1, 3, 32)
    kernel, bias = (w.numpy() for w in mha.dense.weights)
    np.testing.assert_allclose(output.numpy(), heads @ kernel + bias, rtol=1e-4, atol=1e-4)
