"""Building blocks of the Transformer: token embeddings (optionally shared), positional
encoding, feed-forward, encoder and decoder layers (post-layer-norm as in the paper, or
pre-layer-norm)."""

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


def token_embedding(vocab_size, d_model, name="embedding", dtype=None):
    """The token embedding matrix as a Keras `Embedding`, to be shared by several layers
    when embeddings are tied.

    Unit variance after the sqrt(d_model) scale (tensor2tensor, fairseq): Keras' default,
    uniform in +-0.05, leaves tokens a third of the positions' size, and a 4 x 128 model at
    a learning rate of 0.003 was measured stuck at the unigram loss.
    """
    return tf.keras.layers.Embedding(
        vocab_size,
        d_model,
        name=name,
        dtype=dtype,
        embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=d_model**-0.5),
    )


def layer_norm(name=None, dtype=None):
    """Layer normalization as every layer of the model has it (Keras computes it in float32
    under a mixed-precision policy)."""
    return tf.keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name, dtype=dtype)


class PositionalEmbedding(tf.keras.layers.Layer):
    """Token embedding scaled by sqrt(d_model), plus sinusoidal positions, then dropout
    (paper, sections 3.4 and 3.5).

    Args:
        vocab_size: int, number of token ids (0 is padding).
        d_model: int, embedding width.
        max_length: int, longest sequence with a position encoding.
        rate: float, dropout rate. Defaults to 0.1.
        embedding: optional `tf.keras.layers.Embedding` [vocab_size, d_model] to use (and
            share with other layers) instead of a new one (see `token_embedding`).
        word_dropout: float, in training the share of tokens whose whole embedding is
            zeroed before the positions are added (the others scaled by 1 / (1 - it)).
            Defaults to 0.
    """

    def __init__(
        self, vocab_size, d_model, max_length, rate=0.1, embedding=None, word_dropout=0.0, **kwargs
    ):
        super().__init__(**kwargs)
        self.vocab_size, self.d_model, self.max_length, self.rate = (
            vocab_size,
            d_model,
            max_length,
            rate,
        )
        self.embedding = embedding or token_embedding(vocab_size, d_model, dtype=self.dtype_policy)
        self.pos_encoding = positional_encoding(max_length, d_model)
        self.dropout = tf.keras.layers.Dropout(rate, dtype=self.dtype_policy)
        self.word_dropout = word_dropout
        # One draw per token, shared by its d_model features: whole tokens go.
        self.token_dropout = (
            tf.keras.layers.Dropout(
                word_dropout, noise_shape=(None, None, 1), dtype=self.dtype_policy
            )
            if word_dropout
            else None
        )

    def call(self, ids, training=None):
        x = self.embedding(ids) * math.sqrt(self.d_model)  # [batch, len, d_model]
        if self.token_dropout is not None:
            x = self.token_dropout(x, training=training)
        x += tf.cast(self.pos_encoding[:, : tf.shape(ids)[1], :], x.dtype)
        return self.dropout(x, training=training)

    def embed_position(self, ids, position):
        """Incremental decoding: ids [batch] all at `position` -> [batch, d_model]."""
        x = self.embedding(ids) * math.sqrt(self.d_model)
        return x + tf.cast(self.pos_encoding[0, position], x.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "d_model": self.d_model,
            "max_length": self.max_length,
            "rate": self.rate,
            "word_dropout": self.word_dropout,
        }


class SharedOutputProjection(tf.keras.layers.Layer):
    """Output logits through the transposed target embedding matrix, x E^T, without bias
    (tied input and output embeddings: Press and Wolf, 2017; fairseq's
    `--share-decoder-input-output-embed`).

    Args:
        embedding: the `tf.keras.layers.Embedding` [vocab_size, d_model] to share.
    """

    def __init__(self, embedding, **kwargs):
        super().__init__(**kwargs)
        self.embedding = embedding

    def call(self, x):
        matrix = tf.cast(self.embedding.embeddings, x.dtype)  # [vocab, d_model]
        if x.shape.rank == 2:  # one position per row, [batch, d_model]
            return tf.matmul(x, matrix, transpose_b=True)
        rows = tf.reshape(x, [-1, tf.shape(x)[-1]])  # one matmul for every position
        logits = tf.matmul(rows, matrix, transpose_b=True)
        return tf.reshape(logits, tf.concat([tf.shape(x)[:-1], [-1]], axis=0))


class PointerGenerator(tf.keras.layers.Layer):
    """Copying from the source (See et al., 2017, "Get To The Point"; fairseq's
    `transformer_pointer_generator`): the next token's distribution is a mixture
    p = g softmax(logits) + (1 - g) a, where a puts each source position's attention weight
    on that position's token id and g = sigmoid(w . x + b) is read from the decoder output x.
    Needs one vocabulary for source and target (the ids a copies are target ids).

    Args:
        vocab_size: int, the (shared) vocabulary size.

    Call: (logits [batch, tar_len, vocab], decoder output [batch, tar_len, d_model],
    attention [batch, tar_len, inp_len] (rows summing to 1), source ids [batch, inp_len]) ->
    log p [batch, tar_len, vocab], float32: normalised log-probabilities, which serve as
    logits wherever logits are read (their softmax is p).
    """

    def __init__(self, vocab_size, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.gate = tf.keras.layers.Dense(1, name="gate", dtype=self.dtype_policy)

    def call(self, logits, x, attention, inp):
        generate = tf.sigmoid(tf.cast(self.gate(x), tf.float32))  # [batch, tar_len, 1]
        probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        shape = tf.shape(attention)
        batch, tar_len = shape[0], shape[1]
        # Sum each row's attention per source id: one segment per (sentence, id).
        segments = tf.reshape(inp + self.vocab_size * tf.range(batch)[:, tf.newaxis], [-1])
        weights = tf.reshape(tf.transpose(tf.cast(attention, tf.float32), [0, 2, 1]), [-1, tar_len])
        copied = tf.math.unsorted_segment_sum(weights, segments, batch * self.vocab_size)
        copied = tf.transpose(tf.reshape(copied, [batch, self.vocab_size, tar_len]), [0, 2, 1])
        mixture = generate * probs + (1.0 - generate) * copied
        return tf.math.log(mixture + 1e-9)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size}


class FeedForward(tf.keras.layers.Layer):
    """Position-wise feed-forward network: FFN(x) = max(0, x W1 + b1) W2 + b2 (section 3.3).

    Args:
        d_model: int, input and output width.
        dff: int, inner width.
        activation_dropout: float, dropout after the ReLU in training (fairseq's
            `--activation-dropout`). Defaults to 0.
    """

    def __init__(self, d_model, dff, activation_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.dff, self.activation_dropout = d_model, dff, activation_dropout
        dtype = self.dtype_policy
        self.inner = tf.keras.layers.Dense(dff, activation="relu", name="inner", dtype=dtype)
        self.outer = tf.keras.layers.Dense(d_model, name="outer", dtype=dtype)
        self.dropout = (
            tf.keras.layers.Dropout(activation_dropout, dtype=dtype) if activation_dropout else None
        )

    def call(self, x, training=None):
        hidden = self.inner(x)  # [batch, len, dff]
        if self.dropout is not None:
            hidden = self.dropout(hidden, training=training)
        return self.outer(hidden)  # [batch, len, d_model]

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "dff": self.dff,
            "activation_dropout": self.activation_dropout,
        }


NORMS = ("post", "pre")


class _TransformerLayer(tf.keras.layers.Layer):
    """What encoder and decoder layers share: their settings, and where the layer norm of
    each sublayer goes.

    Post-norm (the paper): x = LayerNorm(x + Dropout(Sublayer(x))).
    Pre-norm (tensor2tensor's default, fairseq's `--encoder-normalize-before`):
    x = x + Dropout(Sublayer(LayerNorm(x))); the stack then ends with a layer norm of its own.
    """

    def __init__(
        self,
        d_model,
        num_heads,
        dff,
        rate=0.1,
        norm="post",
        attention_dropout=0.0,
        activation_dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
        self.d_model, self.num_heads, self.dff, self.rate = d_model, num_heads, dff, rate
        self.norm = norm
        self.attention_dropout, self.activation_dropout = attention_dropout, activation_dropout

    def make_attention(self, name):
        return MultiHeadAttention(
            self.d_model, self.num_heads, self.attention_dropout, name=name, dtype=self.dtype_policy
        )

    def make_feed_forward(self):
        return FeedForward(
            self.d_model,
            self.dff,
            self.activation_dropout,
            name="feed_forward",
            dtype=self.dtype_policy,
        )

    def make_layer_norm(self):
        return layer_norm(dtype=self.dtype_policy)

    def make_dropout(self):
        """Dropout on a sublayer's output, at `rate`."""
        return tf.keras.layers.Dropout(self.rate, dtype=self.dtype_policy)

    def sublayer_input(self, x, layer_norm):
        """What a sublayer reads: x normalised (pre-norm) or x itself (post-norm)."""
        return layer_norm(x) if self.norm == "pre" else x

    def residual(self, x, sublayer_output, layer_norm, dropout=None, training=None):
        """x plus the sublayer's output (after dropout), normalised after the sum in
        post-norm."""
        if dropout is not None:
            sublayer_output = dropout(sublayer_output, training=training)
        x = x + sublayer_output
        return x if self.norm == "pre" else layer_norm(x)

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "dff": self.dff,
            "rate": self.rate,
            "norm": self.norm,
            "attention_dropout": self.attention_dropout,
            "activation_dropout": self.activation_dropout,
        }


class EncoderLayer(_TransformerLayer):
    """Self-attention then feed-forward, each with dropout, residual and layer norm.

    Args:
        d_model: int, model width.
        num_heads: int, attention heads.
        dff: int, inner width of the feed-forward network.
        rate: float, dropout rate on each sublayer's output. Defaults to 0.1.
        norm: "post" (the paper's) or "pre": where each sublayer's layer norm goes.
        attention_dropout: float, dropout on the attention weights. Defaults to 0.
        activation_dropout: float, dropout after the feed-forward ReLU. Defaults to 0.
    """

    def __init__(self, d_model, num_heads, dff, rate=0.1, **kwargs):
        super().__init__(d_model, num_heads, dff, rate, **kwargs)
        self.self_attention = self.make_attention("self_attention")
        self.feed_forward = self.make_feed_forward()
        self.layernorm1 = self.make_layer_norm()
        self.layernorm2 = self.make_layer_norm()
        self.dropout1 = self.make_dropout()
        self.dropout2 = self.make_dropout()

    def call(self, x, training=None, padding_mask=None):
        h = self.sublayer_input(x, self.layernorm1)
        attn, weights = self.self_attention(h, h, h, attention_mask=padding_mask, training=training)
        x = self.residual(x, attn, self.layernorm1, self.dropout1, training)
        h = self.sublayer_input(x, self.layernorm2)
        ffn = self.feed_forward(h, training=training)
        x = self.residual(x, ffn, self.layernorm2, self.dropout2, training)
        return x, weights  # [batch, inp_len, d_model], [batch, heads, inp_len, inp_len]


class DecoderLayer(_TransformerLayer):
    """Masked self-attention, encoder-decoder attention, feed-forward; each with dropout,
    residual and layer norm.

    Args: as `EncoderLayer`.
    """

    def __init__(self, d_model, num_heads, dff, rate=0.1, **kwargs):
        super().__init__(d_model, num_heads, dff, rate, **kwargs)
        self.self_attention = self.make_attention("self_attention")
        self.cross_attention = self.make_attention("cross_attention")
        self.feed_forward = self.make_feed_forward()
        self.layernorm1 = self.make_layer_norm()
        self.layernorm2 = self.make_layer_norm()
        self.layernorm3 = self.make_layer_norm()
        self.dropout1 = self.make_dropout()
        self.dropout2 = self.make_dropout()
        self.dropout3 = self.make_dropout()

    def call(self, x, enc_output, training=None, look_ahead_mask=None, padding_mask=None):
        h = self.sublayer_input(x, self.layernorm1)
        attn1, weights1 = self.self_attention(
            h, h, h, attention_mask=look_ahead_mask, training=training
        )
        x = self.residual(x, attn1, self.layernorm1, self.dropout1, training)
        h = self.sublayer_input(x, self.layernorm2)
        attn2, weights2 = self.cross_attention(
            h, enc_output, enc_output, attention_mask=padding_mask, training=training
        )
        x = self.residual(x, attn2, self.layernorm2, self.dropout2, training)
        h = self.sublayer_input(x, self.layernorm3)
        ffn = self.feed_forward(h, training=training)
        x = self.residual(x, ffn, self.layernorm3, self.dropout3, training)
        # x [batch, tar_len, d_model]; weights1 [batch, heads, tar_len, tar_len];
        # weights2 [batch, heads, tar_len, inp_len]
        return x, weights1, weights2

    def init_cache(self, enc_output, beam_size=1):
        """Decoding state for `step`: the encoder output's keys and values (computed once,
        a row per sentence) and empty self-attention keys and values (`beam_size` rows per
        sentence, one per hypothesis)."""
        memory_key, memory_value = self.cross_attention.project_key_value(enc_output, enc_output)
        # [batch * beam_size, heads, 0, depth]
        empty = tf.repeat(memory_key[:, :, :0, :], beam_size, axis=0)
        return {
            "self_key": empty,
            "self_value": empty,
            "memory_key": memory_key,
            "memory_value": memory_value,
        }

    @staticmethod
    def reorder_cache(cache, indices, sentences=None):
        """The cache of the hypotheses `indices` (beam search). The self-attention entries
        have a row per hypothesis; the encoder's keys and values a row per sentence, shared
        by its hypotheses (see `one_position_attention`): they stay where they are, or
        become the rows `sentences` when some are given (sentences leaving the search)."""
        rows = {"self_key": indices, "self_value": indices}
        if sentences is not None:
            rows.update(memory_key=sentences, memory_value=sentences)
        return {**cache, **{name: tf.gather(cache[name], at) for name, at in rows.items()}}

    def step(self, x, cache, padding_mask=None, beam_size=1):
        """One new position, attending to the cached earlier ones (inference only).

        x: [batch * beam_size, d_model], a row per hypothesis (see `init_cache`). Returns
        the output [batch * beam_size, d_model], the cache with this position's keys and
        values appended, and the encoder-decoder attention weights [batch * beam_size,
        heads, 1, inp_len].
        """
        h = self.sublayer_input(x, self.layernorm1)
        key, value = self.self_attention.project_key_value(h, h)
        self_key = tf.concat([cache["self_key"], key], axis=2)  # [batch, heads, t + 1, depth]
        self_value = tf.concat([cache["self_value"], value], axis=2)
        # Only earlier positions are cached: nothing to mask.
        attn1, _ = self.self_attention.attend(h, self_key, self_value)
        x = self.residual(x, attn1, self.layernorm1)
        h = self.sublayer_input(x, self.layernorm2)
        attn2, weights2 = self.cross_attention.attend(
            h, cache["memory_key"], cache["memory_value"], padding_mask, group=beam_size
        )
        x = self.residual(x, attn2, self.layernorm2)
        x = self.residual(
            x, self.feed_forward(self.sublayer_input(x, self.layernorm3)), self.layernorm3
        )
        return x, {**cache, "self_key": self_key, "self_value": self_value}, weights2
