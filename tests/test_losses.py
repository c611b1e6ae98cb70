"""Token losses: cross-entropy with label smoothing, masked on padding, against numpy."""

import numpy as np
import tensorflow as tf

from transformer_tf.training.losses import (
    masked_correct_sum,
    masked_loss_sum,
    masked_symmetric_kl_sum,
    token_losses,
)

LOGITS = np.array(
    [[[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -2.0], [1.0, 1.0, 1.0, 1.0]]], np.float32
)  # [batch 1, len 3, vocab 4]
LABELS = np.array([[1, 2, 0]], np.int32)  # the last position is padding


def _log_softmax(x):
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_label_smoothing_spreads_its_share_over_the_vocabulary():
    log_probs = _log_softmax(LOGITS)
    nll = -np.take_along_axis(log_probs, LABELS[..., None], -1)[..., 0]
    smoothed = 0.9 * nll + 0.1 * -log_probs.mean(-1)
    np.testing.assert_allclose(token_losses(LABELS, LOGITS), nll, rtol=1e-6)
    np.testing.assert_allclose(token_losses(LABELS, LOGITS, 0.1), smoothed, rtol=1e-6)


def test_padding_adds_neither_loss_nor_tokens():
    loss_sum, tokens = masked_loss_sum(tf.constant(LABELS), tf.constant(LOGITS), 0.1)
    expected = token_losses(LABELS, LOGITS, 0.1).numpy()[0, :2].sum()
    assert float(tokens) == 2.0
    np.testing.assert_allclose(float(loss_sum), expected, rtol=1e-6)


def test_accuracy_counts_right_argmaxes_on_real_tokens():
    # Position 0: argmax 0, label 1 (wrong); position 1: argmax 2, label 2 (right).
    assert float(masked_correct_sum(tf.constant(LABELS), tf.constant(LOGITS))) == 1.0


def test_rdrop_kl_is_the_mean_of_both_directions_over_real_tokens():
    other = LOGITS[:, ::-1, ::-1].copy()  # another distribution at every position
    p, q = np.exp(_log_softmax(LOGITS)), np.exp(_log_softmax(other))
    both = (p * np.log(p / q)).sum(-1) + (q * np.log(q / p)).sum(-1)
    expected = both[0, :2].sum() / 2  # the padded position adds nothing
    kl = masked_symmetric_kl_sum(tf.constant(LABELS), tf.constant(LOGITS), tf.constant(other))
    np.testing.assert_allclose(float(kl), expected, rtol=1e-5)
    assert expected > 0.1
    assert float(masked_symmetric_kl_sum(LABELS, LOGITS, LOGITS)) == 0.0
