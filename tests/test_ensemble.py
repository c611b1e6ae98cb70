"""Ensembles: the mean of the members' probabilities, searched as one model."""

import numpy as np
import pytest
import tensorflow as tf

from transformer_tf.inference import search
from transformer_tf.inference.ensemble import Ensemble

from conftest import model_batch, small_transformer

# Members that copy from the source (`model.copy_attention`) point with their own attention.
COPYING = pytest.mark.parametrize("options", [{}, {"copy_attention": True}], ids=["", "copying"])


@COPYING
def test_an_ensemble_of_one_model_twice_decodes_as_that_model(options):
    inp, _ = model_batch()
    budgets = tf.constant([6, 6])
    model = small_transformer(**options)
    pair = Ensemble([model, model])
    for run in (search.greedy_search, lambda m, s, b: search.beam_search(m, s, b, 3, 0.6)):
        alone_tokens, alone_scores = run(model, inp, budgets)
        pair_tokens, pair_scores = run(pair, inp, budgets)
        np.testing.assert_array_equal(alone_tokens, pair_tokens)
        np.testing.assert_allclose(alone_scores, pair_scores, rtol=1e-5)


@COPYING
def test_each_step_is_the_log_of_the_mean_of_the_members_probabilities(options):
    inp, tar = model_batch()
    # the same seed: made different below
    members = [small_transformer(**options), small_transformer(**options)]
    for member in members:
        member(inp, tar, training=False)  # builds the weights
    noise = np.random.default_rng(1)
    members[1].set_weights([w + noise.normal(0, 0.1, w.shape) for w in members[1].get_weights()])
    ensemble = Ensemble(members)
    enc_output, padding_mask = search.run_encoder(ensemble, inp)
    cache = ensemble.decoder.init_cache(enc_output)
    x, _, weights = ensemble.decoder.step(tar[:, 0], tf.constant(0), cache, padding_mask)
    combined = ensemble.output_logits(x, weights, inp).numpy()
    probabilities = [
        tf.nn.softmax(m(inp, tar[:, :1], training=False)[0][:, 0]).numpy() for m in members
    ]
    np.testing.assert_allclose(
        np.exp(combined), np.mean(probabilities, axis=0), rtol=1e-4, atol=1e-6
    )
    assert not np.allclose(probabilities[0], probabilities[1])  # two different members
