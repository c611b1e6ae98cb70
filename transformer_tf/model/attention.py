"""Scaled dot-product attention and multi-head attention."""

import functools

import tensorflow as tf

from transformer_tf.model.masks import MASK_NEGATIVE


def _attention_weights(products, k, mask):
    """softmax(Q K^T / sqrt(d_k)) from the products Q K^T [..., q_len, k_len], masked where
    `mask` is 1. In float32 whatever the compute dtype, so masking and normalisation are
    exact."""
    d_k = k.shape[-1] or tf.shape(k)[-1]  # a constant when the depth is known
    logits = tf.cast(products / tf.math.sqrt(tf.cast(d_k, products.dtype)), tf.float32)
    if mask is not None:
        logits += tf.cast(mask, tf.float32) * MASK_NEGATIVE
    return tf.nn.softmax(logits, axis=-1)


def scaled_dot_product_attention(q, k, v, mask=None, dropout=None):
    """softmax(Q K^T / sqrt(d_k)) V.

    Args:
        q: [..., q_len, depth]
        k: [..., k_len, depth]
        v: [..., k_len, depth_v]
        mask: broadcastable to [..., q_len, k_len]; 1.0 marks a position not to attend to.
        dropout: optional function applied to the weights before they weigh the values
            (attention dropout, in training); the weights returned are those before it.

    Returns:
        (output [..., q_len, depth_v], attention_weights [..., q_len, k_len])
    """
    weights = _attention_weights(tf.matmul(q, k, transpose_b=True), k, mask)
    dropped = weights if dropout is None else dropout(weights)
    output = tf.matmul(tf.cast(dropped, v.dtype), v)  # [..., q_len, depth_v]
    return output, weights


def one_position_attention(q, k, v, mask=None, group=1):
    """`scaled_dot_product_attention` of one query position per row (decoding runs this once
    per layer and step, for every hypothesis).

    With `group` 1, as products summed over the depth and over the keys instead of matrix
    products of one row (thousands of tiny matmuls otherwise). With `group` g > 1, each
    g consecutive rows of `q` share one row of `k` and `v`: beam search's hypotheses of a
    sentence attend to that sentence's encoder output, kept once rather than once per
    hypothesis, as one product of the g queries per sentence and head.

    Args: q [batch * group, heads, 1, depth]; k and v [batch, heads, k_len, depth]; mask
    broadcastable to [batch, 1, 1, k_len]. Returns (output [batch * group, heads, 1,
    depth], weights [batch * group, heads, 1, k_len]).
    """
    if group == 1:
        products = tf.reduce_sum(q * k, axis=-1)[..., tf.newaxis, :]  # [..., 1, k_len]
        weights = _attention_weights(products, k, mask)
        mixed = tf.cast(weights, v.dtype)[..., 0, :, tf.newaxis] * v  # [..., k_len, depth]
        return tf.reduce_sum(mixed, axis=-2, keepdims=True), weights
    heads, depth = q.shape[1], q.shape[-1]
    grouped = tf.reshape(q, [-1, group, heads, depth])  # [batch, group, heads, depth]
    products = tf.einsum("bghd,bhsd->bhgs", grouped, k)
    weights = _attention_weights(products, k, mask)  # [batch, heads, group, k_len]
    output = tf.einsum("bhgs,bhsd->bghd", tf.cast(weights, v.dtype), v)
    weights = tf.reshape(tf.transpose(weights, [0, 2, 1, 3]), [-1, heads, 1, tf.shape(k)[2]])
    return tf.reshape(output, tf.shape(q)), weights


class MultiHeadAttention(tf.keras.layers.Layer):
    """Multi-head attention (Vaswani et al., 2017, section 3.2.2).

    Args:
        d_model: int, model width; must be divisible by `num_heads`.
        num_heads: int, number of attention heads.
        dropout: float, dropout rate on the attention weights in training (fairseq's
            `--attention-dropout`). Defaults to 0.

    Example:
        >>> mha = MultiHeadAttention(d_model=64, num_heads=4)
        >>> x = tf.random.uniform([2, 7, 64])
        >>> out, weights = mha(x, x, x)   # query, key, value
        >>> out.shape, weights.shape
        (TensorShape([2, 7, 64]), TensorShape([2, 4, 7, 7]))
    """

    def __init__(self, d_model, num_heads, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads}).")
        self.d_model = d_model
        self.num_heads = num_heads
        self.dropout = dropout
        self.depth = d_model // num_heads
        dtype = self.dtype_policy  # sublayers compute as this layer does (mixed precision)
        self.weights_dropout = tf.keras.layers.Dropout(dropout, dtype=dtype) if dropout else None

        # Query, key and value start at 1/sqrt(2) of Glorot's scale (fairseq's
        # MultiheadAttention; PyTorch's packed [3 d_model, d_model] projection in effect), the
        # output projection at Glorot's: at Glorot's scale attention starts twice as sharp,
        # and the Multi30K recipe learned about twice as slowly (docs/results.md). One
        # initializer per layer: an unseeded Keras initializer draws the same values on
        # every call, so a shared one would start the three projections identical.
        def qkv(name):
            draw = tf.keras.initializers.VarianceScaling(
                0.5, mode="fan_avg", distribution="uniform"
            )
            return tf.keras.layers.Dense(d_model, name=name, dtype=dtype, kernel_initializer=draw)

        self.wq, self.wk, self.wv = qkv("query"), qkv("key"), qkv("value")
        self.dense = tf.keras.layers.Dense(d_model, name="output", dtype=dtype)

    # Sequences are [batch, len, d_model]. Incremental decoding passes one position as
    # [batch, d_model]: Keras applies Dense to that with one MatMul (to a rank-3 input with
    # about fifteen shape ops), and its heads need a reshape but no transpose.

    def split_heads(self, x):
        """[batch, len, d_model] -> [batch, heads, len, depth]; one position [batch,
        d_model] -> [batch, heads, 1, depth]."""
        if x.shape.rank == 2:
            return tf.reshape(x, [-1, self.num_heads, 1, self.depth])
        batch = tf.shape(x)[0]
        x = tf.reshape(x, [batch, -1, self.num_heads, self.depth])
        return tf.transpose(x, [0, 2, 1, 3])

    def merge_heads(self, x, single_position=False):
        """[batch, heads, len, depth] -> [batch, len, d_model]; with `single_position`,
        [batch, heads, 1, depth] -> [batch, d_model]."""
        if single_position:
            return tf.reshape(x, [-1, self.d_model])
        batch = tf.shape(x)[0]
        x = tf.transpose(x, [0, 2, 1, 3])
        return tf.reshape(x, [batch, -1, self.d_model])

    def project_key_value(self, key, value):
        """Keys and values of the attended sequence, split into heads:
        [batch, len, d_model] -> two [batch, heads, len, depth]. Decoding computes those of
        the encoder output once per sentence and appends those of each new position."""
        return self.split_heads(self.wk(key)), self.split_heads(self.wv(value))

    def attend(self, query, k, v, attention_mask=None, training=None, group=1):
        """Attention of `query` [batch, q_len, d_model] (or one position, [batch, d_model])
        over projected keys and values (for one position, `group` rows of the query per
        row of the keys and values: see `one_position_attention`)."""
        q = self.split_heads(self.wq(query))  # [batch, heads, q_len, depth]
        if query.shape.rank == 2:  # one position: decoding, so no dropout
            output, weights = one_position_attention(q, k, v, attention_mask, group)
            return self.dense(self.merge_heads(output, True)), weights
        dropout = None
        if self.weights_dropout is not None:
            dropout = functools.partial(self.weights_dropout, training=training)
        output, weights = scaled_dot_product_attention(q, k, v, attention_mask, dropout)
        return self.dense(self.merge_heads(output)), weights

    def call(self, query, key, value, attention_mask=None, training=None):
        return self.attend(
            query, *self.project_key_value(key, value), attention_mask, training=training
        )

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
        }
