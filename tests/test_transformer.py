"""The model contract of DESIGN.md: shapes, masking, causality, configs, shared embeddings."""

import numpy as np
import pytest
import tensorflow as tf

from transformer_tf.model import Transformer, create_masks

from conftest import VOCAB_OUT, model_batch, small_transformer


def _embedding_matrices(model):
    model(*model_batch(), training=False)
    return {
        id(layer.embedding.embeddings)
        for layer in (model.encoder.embedding, model.decoder.embedding)
    }


def test_output_and_attention_shapes(model):
    inp, tar = model_batch()
    masks = dict(
        zip(["enc_padding_mask", "look_ahead_mask", "dec_padding_mask"], create_masks(inp, tar))
    )
    final_output, attention = model(inp, tar, training=False, **masks)
    assert final_output.shape == (2, 5, VOCAB_OUT)
    assert sorted(attention) == [
        "decoder_layer1_block1",
        "decoder_layer1_block2",
        "decoder_layer2_block1",
        "decoder_layer2_block2",
    ]
    assert attention["decoder_layer1_block1"].shape == (2, 4, 5, 5)
    assert attention["decoder_layer2_block2"].shape == (2, 4, 5, 7)
    # Masks left out are derived from the inputs: same result.
    derived, _ = model(inp, tar, training=False)
    np.testing.assert_allclose(derived.numpy(), final_output.numpy(), atol=1e-6)


def test_padded_source_positions_get_zero_attention(model):
    inp, tar = model_batch()
    _, attention = model(inp, tar, training=False)
    for layer in (1, 2):
        cross = attention[f"decoder_layer{layer}_block2"].numpy()
        assert np.all(cross[0, ..., 5:] == 0.0)
        assert np.all(cross[1, ..., 3:] == 0.0)
        np.testing.assert_allclose(cross.sum(-1), 1.0, rtol=1e-5)


def test_changing_later_target_tokens_does_not_change_earlier_logits(model):
    inp, tar = model_batch()
    t = 2
    changed = tf.concat([tar[:, : t + 1], tf.fill([2, 5 - t - 1], 42)], axis=1)
    before, _ = model(inp, tar, training=False)
    after, _ = model(inp, changed, training=False)
    np.testing.assert_allclose(before[:, : t + 1].numpy(), after[:, : t + 1].numpy(), atol=1e-5)
    assert np.abs(before[:, t + 1 :].numpy() - after[:, t + 1 :].numpy()).max() > 1e-3


def test_get_config_round_trips(model):
    config = model.get_config()
    clone = Transformer.from_config(config)
    assert clone.get_config() == config
    assert config["num_layers"] == 2 and config["target_vocab_size"] == VOCAB_OUT


@pytest.mark.parametrize(
    "share, matrices, saved", [("none", 2, 0), ("decoder", 2, 1), ("all", 1, 2)]
)
def test_shared_embeddings_are_one_variable(share, matrices, saved):
    model = small_transformer(share_embeddings=share)
    assert len(_embedding_matrices(model)) == matrices
    # Each tie removes one [vocab, d_model] matrix (and "decoder" the output bias too).
    paper = small_transformer()
    _embedding_matrices(paper)
    count = lambda m: sum(int(np.prod(v.shape)) for v in m.trainable_variables)  # noqa: E731
    removed = {
        "none": 0,
        "decoder": VOCAB_OUT * 32 + VOCAB_OUT,
        "all": 2 * VOCAB_OUT * 32 + VOCAB_OUT,
    }[share]
    assert count(paper) - count(model) == removed
    assert len({id(v) for v in model.trainable_variables}) == len(model.trainable_variables)
    if share != "none":  # the logits are the decoder output times the embedding matrix
        inp, tar = model_batch()
        logits, _ = model(inp, tar, training=False)
        enc_padding_mask, look_ahead_mask, dec_padding_mask = create_masks(inp, tar)
        enc_output, _ = model.encoder(inp, padding_mask=enc_padding_mask)
        dec_output, _ = model.decoder(
            tar, enc_output, look_ahead_mask=look_ahead_mask, padding_mask=dec_padding_mask
        )
        matrix = model.decoder.embedding.embedding.embeddings.numpy()
        np.testing.assert_allclose(logits.numpy(), dec_output.numpy() @ matrix.T, atol=1e-4)


def test_a_shared_matrix_gets_the_gradient_of_all_its_uses():
    model = small_transformer(share_embeddings="all")
    inp, tar = model_batch()
    with tf.GradientTape() as tape:
        logits, _ = model(inp, tar, training=False)
        loss = tf.reduce_mean(logits**2)
    matrix = model.encoder.embedding.embedding.embeddings
    gradient = tf.convert_to_tensor(tape.gradient(loss, matrix)).numpy()
    # Rows of ids seen only by the encoder (5..9) and rows only the output layer uses (the
    # vocabulary beyond every input id) both get a gradient.
    assert np.abs(gradient[[5, 6, 7, 8]]).sum() > 0
    assert np.abs(gradient[40:]).sum() > 0


def test_sharing_all_embeddings_needs_one_vocabulary_size():
    with pytest.raises(ValueError, match="input_vocab_size == target_vocab_size"):
        Transformer(1, 32, 4, 64, 50, 60, 40, 40, share_embeddings="all")


def test_options_round_trip_through_get_config():
    model = small_transformer(
        share_embeddings="decoder",
        norm="pre",
        attention_dropout=0.1,
        activation_dropout=0.2,
        word_dropout=0.3,
    )
    config = model.get_config()
    options = (
        "share_embeddings",
        "norm",
        "attention_dropout",
        "activation_dropout",
        "word_dropout",
    )
    assert {k: config[k] for k in options} == {
        "share_embeddings": "decoder",
        "norm": "pre",
        "attention_dropout": 0.1,
        "activation_dropout": 0.2,
        "word_dropout": 0.3,
    }
    assert Transformer.from_config(config).get_config() == config


def test_copy_attention_mixes_the_attention_over_source_ids_into_the_output():
    model = small_transformer(copy_attention=True)
    inp, tar = model_batch()
    log_probs, attention = model(inp, tar, training=False)
    probs = np.exp(log_probs.numpy())
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)  # a distribution per position

    # The gate fully shut: the output is the last layer's attention, heads averaged, summed
    # per source id (ids 5, 6, 7, 8, 3 and 9, 4, 3), and nothing else.
    model.pointer_generator.gate.bias.assign([-40.0])
    model.pointer_generator.gate.kernel.assign(tf.zeros_like(model.pointer_generator.gate.kernel))
    probs = np.exp(model(inp, tar, training=False)[0].numpy())
    weights = attention["decoder_layer2_block2"].numpy().mean(axis=1)  # [batch, tar, inp]
    expected = np.zeros_like(probs)
    for b in range(2):
        for s, token in enumerate(inp.numpy()[b]):
            expected[b, :, token] += weights[b, :, s]
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert probs[1, :, [5, 6, 7, 8]].max() < 1e-6  # the second source has none of these

    # It learns: the gate and everything under the attention get gradients.
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model(inp, tar, training=False)[0][:, :, 5])
    gradients = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in gradients)


def test_copy_attention_needs_one_vocabulary_size():
    with pytest.raises(ValueError, match="copy_attention needs input_vocab_size"):
        Transformer(1, 32, 4, 64, 50, 60, 40, 40, copy_attention=True)
