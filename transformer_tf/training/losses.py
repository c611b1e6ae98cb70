"""Token-level loss and accuracy, masked on padding (target id 0)."""

import tensorflow as tf


def token_losses(labels, logits, label_smoothing=0.0):
    """Per-token cross-entropy against label-smoothed targets.

    The true token gets 1 - label_smoothing and every vocabulary entry an equal share of
    label_smoothing. Computed in float32. [batch, len], [batch, len, vocab] -> [batch, len].
    """
    logits = tf.cast(logits, tf.float32)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    nll = -tf.gather(log_probs, labels, batch_dims=2)  # [batch, len]
    if not label_smoothing:
        return nll
    uniform = -tf.reduce_mean(log_probs, axis=-1)  # cross-entropy with the uniform distribution
    return (1.0 - label_smoothing) * nll + label_smoothing * uniform


def masked_loss_sum(labels, logits, label_smoothing=0.0):
    """(sum of per-token losses over real tokens, number of real tokens), both float32."""
    mask = tf.cast(tf.not_equal(labels, 0), tf.float32)
    losses = token_losses(labels, logits, label_smoothing) * mask
    return tf.reduce_sum(losses), tf.reduce_sum(mask)


def masked_correct_sum(labels, logits):
    """Number of real target tokens whose argmax prediction is right, float32."""
    predictions = tf.argmax(logits, axis=-1, output_type=labels.dtype)
    mask = tf.not_equal(labels, 0)
    return tf.reduce_sum(tf.cast(tf.logical_and(tf.equal(predictions, labels), mask), tf.float32))


def masked_symmetric_kl_sum(labels, logits, other_logits):
    """Sum over real tokens of (KL(p || q) + KL(q || p)) / 2, p and q the distributions of
    `logits` and `other_logits` (R-Drop's regulariser), float32."""
    mask = tf.cast(tf.not_equal(labels, 0), tf.float32)
    log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    log_q = tf.nn.log_softmax(tf.cast(other_logits, tf.float32), axis=-1)
    # KL(p||q) + KL(q||p) = sum (p - q)(log p - log q)
    both = tf.reduce_sum((tf.exp(log_p) - tf.exp(log_q)) * (log_p - log_q), axis=-1)
    return tf.reduce_sum(both * mask) / 2.0
