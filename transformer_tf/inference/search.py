"""Decoding: the whole loop runs in the graph (tf.while_loop), batched."""

import tensorflow as tf

from transformer_tf.data.tokenizers import BOS_ID, EOS_ID, PAD_ID
from transformer_tf.model.masks import create_look_ahead_mask, create_padding_mask


def max_output_lengths(source, ratio, offset, limit):
    """Per-sentence decoding budget: ratio * source tokens + offset, at most `limit`.

    [batch, src_len] -> [batch] int32.
    """
    source_lengths = tf.reduce_sum(tf.cast(tf.not_equal(source, PAD_ID), tf.float32), axis=1)
    lengths = tf.cast(tf.math.ceil(ratio * source_lengths), tf.int32) + offset
    return tf.minimum(lengths, limit)


def greedy_search(model, source, max_lengths):
    """Greedy decoding: at each step, the most probable next token.

    Args:
        model: a `Transformer`.
        source: [batch, src_len] int32 source ids (EOS-terminated, 0-padded).
        max_lengths: [batch] int32, most tokens to generate per sentence (EOS included).

    Returns:
        tokens: [batch, out_len] int32 without the leading BOS; PAD after each EOS.
        scores: [batch] float32, sum of the log-probabilities of the chosen tokens.
    """
    batch = tf.shape(source)[0]
    padding_mask = create_padding_mask(source)
    enc_output, _ = model.encoder(source, training=False, padding_mask=padding_mask)

    def step(i, output, finished, scores):
        look_ahead_mask = create_look_ahead_mask(tf.shape(output)[1])
        dec_output, _ = model.decoder(output, enc_output, training=False,
                                      look_ahead_mask=look_ahead_mask, padding_mask=padding_mask)
        logits = model.final_layer(dec_output[:, -1, :])  # [batch, vocab]
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        next_token = tf.argmax(log_probs, axis=-1, output_type=tf.int32)  # [batch]
        next_score = tf.gather(log_probs, next_token, batch_dims=1)
        next_token = tf.where(finished, PAD_ID, next_token)
        scores += tf.where(finished, 0.0, next_score)
        finished |= tf.equal(next_token, EOS_ID) | (i + 1 >= max_lengths)
        return i + 1, tf.concat([output, next_token[:, tf.newaxis]], axis=1), finished, scores

    def not_done(i, output, finished, scores):
        return tf.logical_not(tf.reduce_all(finished))

    _, output, _, scores = tf.while_loop(
        not_done, step,
        (tf.constant(0), tf.fill([batch, 1], BOS_ID), tf.zeros([batch], tf.bool),
         tf.zeros([batch], tf.float32)),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None]),
                          tf.TensorShape([None]), tf.TensorShape([None])))
    return output[:, 1:], scores
