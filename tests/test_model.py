"""The model contract of DESIGN.md: shapes, attention formula, masking, causality."""

import numpy as np
import pytest
import tensorflow as tf

from transformer_tf.model import (Transformer, create_look_ahead_mask, create_masks,
                                  create_padding_mask, scaled_dot_product_attention)

VOCAB_IN, VOCAB_OUT = 50, 60


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    return Transformer(num_layers=2, d_model=32, num_heads=4, dff=64,
                       input_vocab_size=VOCAB_IN, target_vocab_size=VOCAB_OUT,
                       pe_input=40, pe_target=40, rate=0.1)


def _batch():
    inp = tf.constant([[5, 6, 7, 8, 3, 0, 0], [9, 4, 3, 0, 0, 0, 0]], tf.int32)
    tar = tf.constant([[2, 11, 12, 13, 14], [2, 15, 16, 0, 0]], tf.int32)
    return inp, tar


def test_output_and_attention_shapes(model):
    inp, tar = _batch()
    masks = dict(zip(["enc_padding_mask", "look_ahead_mask", "dec_padding_mask"],
                     create_masks(inp, tar)))
    final_output, attention = model(inp, tar, training=False, **masks)
    assert final_output.shape == (2, 5, VOCAB_OUT)
    assert sorted(attention) == ["decoder_layer1_block1", "decoder_layer1_block2",
                                 "decoder_layer2_block1", "decoder_layer2_block2"]
    assert attention["decoder_layer1_block1"].shape == (2, 4, 5, 5)
    assert attention["decoder_layer2_block2"].shape == (2, 4, 5, 7)
    # Masks left out are derived from the inputs: same result.
    derived, _ = model(inp, tar, training=False)
    np.testing.assert_allclose(derived.numpy(), final_output.numpy(), atol=1e-6)


def test_mask_helpers():
    np.testing.assert_array_equal(create_padding_mask(tf.constant([[4, 0]]))[0, 0, 0], [0, 1])
    np.testing.assert_array_equal(create_look_ahead_mask(3), [[0, 1, 1], [0, 0, 1], [0, 0, 0]])


def test_attention_is_softmax_qk_over_sqrt_dk_times_v():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=shape).astype(np.float32)
               for shape in [(2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)])
    mask = np.zeros((2, 1, 1, 6), np.float32)
    mask[1, ..., 4:] = 1.0
    output, weights = scaled_dot_product_attention(q, k, v, mask)

    logits = q @ np.swapaxes(k, -1, -2) / np.sqrt(8.0) + mask * -1e9
    expected_weights = np.exp(logits - logits.max(-1, keepdims=True))
    expected_weights /= expected_weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights.numpy(), expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(output.numpy(), expected_weights @ v, rtol=1e-5, atol=1e-5)


def test_multi_head_attention_matches_numpy_with_the_layer_weights(model):
    mha = model.decoder.dec_layers[0].mha2
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


def test_padded_source_positions_get_zero_attention(model):
    inp, tar = _batch()
    _, attention = model(inp, tar, training=False)
    for layer in (1, 2):
        cross = attention[f"decoder_layer{layer}_block2"].numpy()
        assert np.all(cross[0, ..., 5:] == 0.0)
        assert np.all(cross[1, ..., 3:] == 0.0)
        np.testing.assert_allclose(cross.sum(-1), 1.0, rtol=1e-5)


def test_changing_later_target_tokens_does_not_change_earlier_logits(model):
    inp, tar = _batch()
    t = 2
    changed = tf.concat([tar[:, : t + 1], tf.fill([2, 5 - t - 1], 42)], axis=1)
    before, _ = model(inp, tar, training=False)
    after, _ = model(inp, changed, training=False)
    np.testing.assert_allclose(before[:, : t + 1].numpy(), after[:, : t + 1].numpy(), atol=1e-5)
    assert np.abs(before[:, t + 1:].numpy() - after[:, t + 1:].numpy()).max() > 1e-3


def test_get_config_round_trips(model):
    config = model.get_config()
    clone = Transformer.from_config(config)
    assert clone.get_config() == config
    assert config["num_layers"] == 2 and config["target_vocab_size"] == VOCAB_OUT


def test_token_embeddings_start_at_unit_scale(model):
    # Scaled by sqrt(d_model), token embeddings start with standard deviation 1 (tensor2tensor,
    # fairseq), the size of the sinusoid positions; Keras' default (a third of it) was
    # measured to leave a small model stuck at the unigram loss.
    model(*_batch(), training=False)
    for stack in (model.encoder, model.decoder):
        scaled = stack.embedding.embedding.embeddings.numpy() * np.sqrt(model.d_model)
        assert abs(scaled.mean()) < 0.1 and 0.9 < scaled.std() < 1.1
