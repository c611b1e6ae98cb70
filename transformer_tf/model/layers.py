"""Building blocks of the Transformer: positional encoding, feed-forward, encoder and
decoder layers (post-layer-norm, as in the paper)."""

import math

import numpy as np
import tensorflow as tf

from transformer_tf.model.attention import MultiHeadAttention

# Of every layer norm; exports that rebuild the model elsewhere (CTranslate2) read it here.
LAYER_NORM_EPSILON = 1e-6


def positional_encoding(length, d_model):
    """Sinusoidal positional encoding (paper, section 3.5). -> [1, length, d_model] float32."""
    positions = np.arange(length)[:, np.newaxis]  # [length, 1]
    dims = np.arange(d_model)[np.newaxis, :]  # [1, d_model]
    angles = positions / np.power(10000.0, (2 * (dims // 2)) / np.float32(d_model))
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return tf.constant(angles[np.newaxis, ...], dtype=tf.float32)


class PositionalEmbedding(tf.keras.layers.Layer):
    """Token embedding scaled by sqrt(d_model), plus sinusoidal positions, then dropout
    (paper, sections 3.4 and 3.5).

    Args:
        vocab_size: int, number of token ids (0 is padding).
        d_model: int, embedding width.
        max_length: int, longest sequence with a position encoding.
        rate: float, dropout rate. Defaults to 0.1.
    """

    def __init__(self, vocab_size, d_model, max_length, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.d_model, self.max_length, self.rate = (
            vocab_size, d_model, max_length, rate)
        # Unit variance after the sqrt(d_model) scale (tensor2tensor, fairseq): Keras'
        # default, uniform in +-0.05, leaves tokens a third of the positions' size, and a
        # 4 x 128 model at a learning rate of 0.003 was measured stuck at the unigram loss.
        self.embedding = tf.keras.layers.Embedding(
            vocab_size, d_model, name="embedding",
            embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=d_model ** -0.5))
        self.pos_encoding = positional_encoding(max_length, d_model)
        self.dropout = tf.keras.layers.Dropout(rate)

    def call(self, ids, training=False):
        x = self.embedding(ids) * math.sqrt(self.d_model)  # [batch, len, d_model]
        x += tf.cast(self.pos_encoding[:, :tf.shape(ids)[1], :], x.dtype)
        return self.dropout(x, training=training)

    def embed_position(self, ids, position):
        """Incremental decoding: ids [batch] all at `position` -> [batch, d_model]."""
        x = self.embedding(ids) * math.sqrt(self.d_model)
        return x + tf.cast(self.pos_encoding[0, position], x.dtype)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "d_model": self.d_model,
                "max_length": self.max_length, "rate": self.rate}


class FeedForward(tf.keras.layers.Layer):
    """Position-wise feed-forward network: FFN(x) = max(0, x W1 + b1) W2 + b2 (section 3.3).

    Args:
        d_model: int, input and output width.
        dff: int, inner width.
    """

    def __init__(self, d_model, dff, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.dff = d_model, dff
        self.inner = tf.keras.layers.Dense(dff, activation="relu", name="inner")
        self.outer = tf.keras.layers.Dense(d_model, name="outer")

    def call(self, x):
        return self.outer(self.inner(x))  # [batch, len, dff] -> [batch, len, d_model]

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "dff": self.dff}


class EncoderLayer(tf.keras.layers.Layer):
    """Self-attention then feed-forward, each with dropout, residual and layer norm.

    Args:
        d_model: int, model width.
        num_heads: int, attention heads.
        dff: int, inner width of the feed-forward network.
        rate: float, dropout rate. Defaults to 0.1.
    """

    def __init__(self, d_model, num_heads, dff, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.num_heads, self.dff, self.rate = d_model, num_heads, dff, rate
        self.mha = MultiHeadAttention(d_model, num_heads, name="self_attention")
        self.ffn = FeedForward(d_model, dff, name="feed_forward")
        self.layernorm1 = tf.keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON)
        self.layernorm2 = tf.keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON)
        self.dropout1 = tf.keras.layers.Dropout(rate)
        self.dropout2 = tf.keras.layers.Dropout(rate)

    def call(self, x, training=False, padding_mask=None):
        attn, weights = self.mha(x, x, x, attention_mask=padding_mask)
        x = self.layernorm1(x + self.dropout1(attn, training=training))
        ffn = self.ffn(x)
        x = self.layernorm2(x + self.dropout2(ffn, training=training))
        return x, weights  # [batch, inp_len, d_model], [batch, heads, inp_len, inp_len]

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "dff": self.dff, "rate": self.rate}


class DecoderLayer(tf.keras.layers.Layer):
    """Masked self-attention, encoder-decoder attention, feed-forward; each with dropout,
    residual and layer norm.

    Args: as `EncoderLayer`.
    """

    def __init__(self, d_model, num_heads, dff, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.num_heads, self.dff, self.rate = d_model, num_heads, dff, rate
        self.mha1 = MultiHeadAttention(d_model, num_heads, name="self_attention")
        self.mha2 = MultiHeadAttention(d_model, num_heads, name="cross_attention")
        self.ffn = FeedForward(d_model, dff, name="feed_forward")
        self.layernorm1 = tf.keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON)
        self.layernorm2 = tf.keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON)
        self.layernorm3 = tf.keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON)
        self.dropout1 = tf.keras.layers.Dropout(rate)
        self.dropout2 = tf.keras.layers.Dropout(rate)
        self.dropout3 = tf.keras.layers.Dropout(rate)

    def call(self, x, enc_output, training=False, look_ahead_mask=None, padding_mask=None):
        attn1, weights1 = self.mha1(x, x, x, attention_mask=look_ahead_mask)
        x = self.layernorm1(x + self.dropout1(attn1, training=training))
        attn2, weights2 = self.mha2(x, enc_output, enc_output, attention_mask=padding_mask)
        x = self.layernorm2(x + self.dropout2(attn2, training=training))
        ffn = self.ffn(x)
        x = self.layernorm3(x + self.dropout3(ffn, training=training))
        # [batch, tar_len, d_model], [batch, heads, tar_len, tar_len], [batch, heads, tar_len, inp_len]
        return x, weights1, weights2

    def init_cache(self, enc_output):
        """Decoding state for `step`: the encoder output's keys and values (computed once)
        and empty self-attention keys and values."""
        memory_key, memory_value = self.mha2.project_key_value(enc_output, enc_output)
        empty = memory_key[:, :, :0, :]  # [batch, heads, 0, depth]
        return {"self_key": empty, "self_value": empty,
                "memory_key": memory_key, "memory_value": memory_value}

    @staticmethod
    def reorder_cache(cache, indices):
        """The cache of the hypotheses `indices` (beam search): only the self-attention
        entries depend on the hypothesis; the encoder's keys and values are the same for
        every hypothesis of a sentence and stay where they are."""
        return {**cache, "self_key": tf.gather(cache["self_key"], indices),
                "self_value": tf.gather(cache["self_value"], indices)}

    def step(self, x, cache, padding_mask=None):
        """One new position, attending to the cached earlier ones (inference only).

        x: [batch, d_model]. Returns the output [batch, d_model], the cache with this
        position's keys and values appended, and the encoder-decoder attention weights
        [batch, heads, 1, inp_len].
        """
        key, value = self.mha1.project_key_value(x, x)
        self_key = tf.concat([cache["self_key"], key], axis=2)  # [batch, heads, t + 1, depth]
        self_value = tf.concat([cache["self_value"], value], axis=2)
        attn1, _ = self.mha1.attend(x, self_key, self_value)  # earlier positions only: no mask
        x = self.layernorm1(x + attn1)
        attn2, weights2 = self.mha2.attend(x, cache["memory_key"], cache["memory_value"],
                                           padding_mask)
        x = self.layernorm2(x + attn2)
        x = self.layernorm3(x + self.ffn(x))
        return x, {**cache, "self_key": self_key, "self_value": self_value}, weights2

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "dff": self.dff, "rate": self.rate}
