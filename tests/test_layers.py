"""The Transformer's layers: embedding scale, where layer norms go, and the extra dropouts."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import model_batch, small_transformer


def test_token_embeddings_start_at_unit_scale(model):
    # Scaled by sqrt(d_model), token embeddings start with standard deviation 1 (tensor2tensor,
    # fairseq), the size of the sinusoid positions; Keras' default (a third of it) was
    # measured to leave a small model stuck at the unigram loss.
    model(*model_batch(), training=False)
    for stack in (model.encoder, model.decoder):
        scaled = stack.embedding.embedding.embeddings.numpy() * np.sqrt(model.d_model)
        assert abs(scaled.mean()) < 0.1 and 0.9 < scaled.std() < 1.1


def test_query_key_value_start_at_half_of_glorots_variance(model):
    # fairseq's initialization: Glorot's variance 2 / (fan_in + fan_out) halved for the
    # query, key and value projections (measured: the Multi30K recipe at 20.56 validation
    # BLEU after 1,000 updates, against 9.73 at Glorot's), the output projection at Glorot's.
    model(*model_batch(), training=False)
    attention = model.decoder.dec_layers[0].cross_attention
    glorot = np.sqrt(1.0 / model.d_model)  # a square d_model x d_model kernel
    kernels = [dense.kernel.numpy() for dense in (attention.wq, attention.wk, attention.wv)]
    for kernel in kernels:
        assert 0.9 < kernel.std() / (glorot / np.sqrt(2.0)) < 1.1
    assert 0.9 < attention.dense.kernel.numpy().std() / glorot < 1.1
    # Independent draws: one shared unseeded initializer gave the three the same kernel
    # (session 14's runs started so).
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert abs(np.corrcoef(kernels[a].ravel(), kernels[b].ravel())[0, 1]) < 0.2


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_encoder_layer_puts_the_layer_norm_where_its_norm_says(norm):
    model = small_transformer(norm=norm)
    model(*model_batch(), training=False)
    layer = model.encoder.enc_layers[0]
    x = tf.random.normal([2, 7, 32], seed=3)
    out, _ = layer(x, training=False)
    ln1, ln2 = layer.layernorm1, layer.layernorm2
    if norm == "pre":  # x + F(LN(x)), unnormalised
        h = ln1(x)
        x1 = x + layer.self_attention(h, h, h)[0]
        expected = x1 + layer.feed_forward(ln2(x1))
    else:  # LN(x + F(x))
        x1 = ln1(x + layer.self_attention(x, x, x)[0])
        expected = ln2(x1 + layer.feed_forward(x1))
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-5)
    # A pre-norm stack ends with its own layer norm; a post-norm stack needs none.
    assert (model.encoder.final_norm is not None) == (norm == "pre")
    assert (model.decoder.final_norm is not None) == (norm == "pre")


@pytest.mark.parametrize(
    "options", [{"attention_dropout": 0.5}, {"activation_dropout": 0.5}, {"word_dropout": 0.5}]
)
def test_extra_dropouts_act_in_training_only(options):
    model = small_transformer(**options, rate=0.0)
    inp, tar = model_batch()
    plain = small_transformer(rate=0.0)
    plain(inp, tar, training=False)
    model(inp, tar, training=False)
    plain.set_weights(model.get_weights())
    reference, _ = plain(inp, tar, training=True)  # no dropout anywhere
    inference, _ = model(inp, tar, training=False)
    trained, weights = model(inp, tar, training=True)
    np.testing.assert_allclose(inference.numpy(), reference.numpy(), atol=1e-5)
    assert np.abs(trained.numpy() - reference.numpy()).max() > 1e-2
    # The attention weights returned (for inspection) are those before the dropout.
    np.testing.assert_allclose(weights["decoder_layer1_block2"].numpy().sum(-1), 1.0, rtol=1e-5)


def test_word_dropout_zeroes_whole_token_embeddings():
    from transformer_tf.model.layers import PositionalEmbedding

    layer = PositionalEmbedding(50, 16, 40, rate=0.0, word_dropout=0.5)
    ids = tf.random.stateless_uniform([8, 30], seed=[1, 2], minval=1, maxval=50, dtype=tf.int32)
    positions = layer.pos_encoding[:, :30, :]
    words = layer(ids, training=False) - positions  # the scaled embeddings, nothing dropped
    dropped = (layer(ids, training=True) - positions).numpy()
    zero = np.all(np.abs(dropped) < 1e-6, axis=-1)  # [batch, len]: tokens dropped whole
    kept = ~zero
    # About half the tokens go whole; the rest are scaled by 1 / (1 - 0.5), feature by feature.
    assert 0.3 < zero.mean() < 0.7
    np.testing.assert_allclose(dropped[kept], 2.0 * words.numpy()[kept], rtol=1e-5, atol=1e-5)
