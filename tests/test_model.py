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


def _small(rate=0.1, **options):
    tf.keras.utils.set_random_seed(0)
    return Transformer(num_layers=2, d_model=32, num_heads=4, dff=64, input_vocab_size=VOCAB_OUT,
                       target_vocab_size=VOCAB_OUT, pe_input=40, pe_target=40, rate=rate,
                       **options)


def _embedding_matrices(model):
    model(*_batch(), training=False)
    return {id(layer.embedding.embeddings) for layer in (model.encoder.embedding,
                                                          model.decoder.embedding)}


@pytest.mark.parametrize("share, matrices, saved", [("none", 2, 0), ("decoder", 2, 1),
                                                    ("all", 1, 2)])
def test_shared_embeddings_are_one_variable(share, matrices, saved):
    model = _small(share_embeddings=share)
    assert len(_embedding_matrices(model)) == matrices
    # Each tie removes one [vocab, d_model] matrix (and "decoder" the output bias too).
    paper = _small()
    _embedding_matrices(paper)
    count = lambda m: sum(int(np.prod(v.shape)) for v in m.trainable_variables)  # noqa: E731
    removed = {"none": 0, "decoder": VOCAB_OUT * 32 + VOCAB_OUT,
               "all": 2 * VOCAB_OUT * 32 + VOCAB_OUT}[share]
    assert count(paper) - count(model) == removed
    assert len({id(v) for v in model.trainable_variables}) == len(model.trainable_variables)
    if share != "none":  # the logits are the decoder output times the embedding matrix
        inp, tar = _batch()
        logits, _ = model(inp, tar, training=False)
        enc_padding_mask, look_ahead_mask, dec_padding_mask = create_masks(inp, tar)
        enc_output, _ = model.encoder(inp, padding_mask=enc_padding_mask)
        dec_output, _ = model.decoder(tar, enc_output, look_ahead_mask=look_ahead_mask,
                                      padding_mask=dec_padding_mask)
        matrix = model.decoder.embedding.embedding.embeddings.numpy()
        np.testing.assert_allclose(logits.numpy(), dec_output.numpy() @ matrix.T, atol=1e-4)


def test_a_shared_matrix_gets_the_gradient_of_all_its_uses():
    model = _small(share_embeddings="all")
    inp, tar = _batch()
    with tf.GradientTape() as tape:
        logits, _ = model(inp, tar, training=False)
        loss = tf.reduce_mean(logits ** 2)
    matrix = model.encoder.embedding.embedding.embeddings
    gradient = tf.convert_to_tensor(tape.gradient(loss, matrix)).numpy()
    # Rows of ids seen only by the encoder (5..9) and rows only the output layer uses (the
    # vocabulary beyond every input id) both get a gradient.
    assert np.abs(gradient[[5, 6, 7, 8]]).sum() > 0
    assert np.abs(gradient[40:]).sum() > 0


def test_sharing_all_embeddings_needs_one_vocabulary_size():
    with pytest.raises(ValueError, match="input_vocab_size == target_vocab_size"):
        Transformer(1, 32, 4, 64, 50, 60, 40, 40, share_embeddings="all")


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_encoder_layer_puts_the_layer_norm_where_its_norm_says(norm):
    model = _small(norm=norm)
    model(*_batch(), training=False)
    layer = model.encoder.enc_layers[0]
    x = tf.random.normal([2, 7, 32], seed=3)
    out, _ = layer(x, training=False)
    ln1, ln2 = layer.layernorm1, layer.layernorm2
    if norm == "pre":  # x + F(LN(x)), unnormalised
        h = ln1(x)
        x1 = x + layer.mha(h, h, h)[0]
        expected = x1 + layer.ffn(ln2(x1))
    else:  # LN(x + F(x))
        x1 = ln1(x + layer.mha(x, x, x)[0])
        expected = ln2(x1 + layer.ffn(x1))
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-5)
    # A pre-norm stack ends with its own layer norm; a post-norm stack needs none.
    assert (model.encoder.final_norm is not None) == (norm == "pre")
    assert (model.decoder.final_norm is not None) == (norm == "pre")


@pytest.mark.parametrize("options", [{"attention_dropout": 0.5}, {"activation_dropout": 0.5}])
def test_extra_dropouts_act_in_training_only(options):
    model = _small(**options, rate=0.0)
    inp, tar = _batch()
    plain = _small(rate=0.0)
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


def test_options_round_trip_through_get_config():
    model = _small(share_embeddings="decoder", norm="pre", attention_dropout=0.1,
                   activation_dropout=0.2)
    config = model.get_config()
    assert {k: config[k] for k in ("share_embeddings", "norm", "attention_dropout",
                                   "activation_dropout")} == {
        "share_embeddings": "decoder", "norm": "pre", "attention_dropout": 0.1,
        "activation_dropout": 0.2}
    assert Transformer.from_config(config).get_config() == config
