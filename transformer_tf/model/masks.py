"""Attention masks in the convention of "Attention Is All You Need" code.

A mask value of 1.0 marks a position that must NOT be attended to (padding, or a
future position); attention adds it times a large negative number to the logits.
Token id 0 is padding.
"""

import tensorflow as tf

# Added, times the mask, to attention logits: large enough to zero a softmax in float32.
# Decoding gives it as the score of a token or hypothesis that must not be chosen.
MASK_NEGATIVE = -1e9


def create_padding_mask(seq):
    """1.0 where `seq` is padding. [batch, seq_len] -> [batch, 1, 1, seq_len]."""
    mask = tf.cast(tf.equal(seq, 0), tf.float32)
    return mask[:, tf.newaxis, tf.newaxis, :]


def create_look_ahead_mask(size):
    """1.0 above the diagonal: position i may not see j > i. -> [size, size]."""
    return 1.0 - tf.linalg.band_part(tf.ones((size, size)), -1, 0)


def create_masks(inp, tar):
    """The three masks of `Transformer.call` for a source and a (shifted) target batch.

    Returns (enc_padding_mask, look_ahead_mask, dec_padding_mask):
    [batch, 1, 1, inp_len], [batch, 1, tar_len, tar_len], [batch, 1, 1, inp_len].
    """
    enc_padding_mask = create_padding_mask(inp)
    dec_padding_mask = create_padding_mask(inp)
    look_ahead_mask = create_look_ahead_mask(tf.shape(tar)[1])
    # A decoder position sees neither the future nor target padding.
    look_ahead_mask = tf.maximum(create_padding_mask(tar), look_ahead_mask)
    return enc_padding_mask, look_ahead_mask, dec_padding_mask
