"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017)."""

import dataclasses

import tensorflow as tf

from transformer_tf.model.layers import (
    NORMS,
    DecoderLayer,
    EncoderLayer,
    PointerGenerator,
    PositionalEmbedding,
    SharedOutputProjection,
    layer_norm,
    token_embedding,
)
from transformer_tf.model.masks import create_masks

SHARE_EMBEDDINGS = ("none", "decoder", "all")


def encoder_attention_key(layer):
    """Key of encoder layer `layer`'s (from 1) self-attention weights."""
    return f"encoder_layer{layer}"


def decoder_attention_key(layer, block):
    """Key of decoder layer `layer`'s (from 1) attention weights: block 1 is the masked
    self-attention, block 2 the encoder-decoder attention."""
    return f"decoder_layer{layer}_block{block}"


class _LayerStack(tf.keras.layers.Layer):
    """A positional token embedding and `num_layers` layers of `layer_class`: what the
    encoder and the decoder have in common. Pre-norm stacks end with a layer norm
    (`final_norm`), since their layers leave the residual sum unnormalised."""

    layer_class = None

    def __init__(
        self,
        num_layers,
        d_model,
        num_heads,
        dff,
        vocab_size,
        maximum_position_encoding,
        rate=0.1,
        *,
        norm="post",
        attention_dropout=0.0,
        activation_dropout=0.0,
        word_dropout=0.0,
        embedding=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_layers = num_layers
        self.norm = norm
        dtype = self.dtype_policy
        self.embedding = PositionalEmbedding(
            vocab_size,
            d_model,
            maximum_position_encoding,
            rate,
            embedding=embedding,
            word_dropout=word_dropout,
            name="embedding",
            dtype=dtype,
        )
        # One attribute per layer, not a list: Keras 3 lists of layers are invisible to
        # tf.train.Checkpoint, so a checkpoint would not find these weights by the model.
        for i in range(num_layers):
            layer = self.layer_class(
                d_model,
                num_heads,
                dff,
                rate,
                norm=norm,
                attention_dropout=attention_dropout,
                activation_dropout=activation_dropout,
                name=f"layer{i + 1}",
                dtype=dtype,
            )
            setattr(self, f"layer{i + 1}", layer)
        self.final_norm = layer_norm("final_norm", dtype) if norm == "pre" else None

    def stack(self):
        """The layers, bottom first."""
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_layers)]

    def normalize_output(self, x):
        """The stack's output: x after the final layer norm of a pre-norm stack."""
        return x if self.final_norm is None else self.final_norm(x)


class Encoder(_LayerStack):
    """Positional token embedding, then `num_layers` encoder layers.

    Args:
        num_layers, d_model, num_heads, dff, rate: as `Transformer`.
        vocab_size: int, source vocabulary size.
        maximum_position_encoding: int, longest source sequence the model accepts.
    """

    layer_class = EncoderLayer

    def call(self, x, training=None, padding_mask=None):
        x = self.embedding(x, training=training)  # [batch, inp_len, d_model]
        weights = {}
        for i, layer in enumerate(self.enc_layers):
            x, weights[encoder_attention_key(i + 1)] = layer(
                x, training=training, padding_mask=padding_mask
            )
        return self.normalize_output(x), weights

    @property
    def enc_layers(self):
        return self.stack()


class Decoder(_LayerStack):
    """Positional token embedding, then `num_layers` decoder layers.

    Args: as `Encoder`, with the target vocabulary and longest target sequence.
    """

    layer_class = DecoderLayer

    def call(self, x, enc_output, training=None, look_ahead_mask=None, padding_mask=None):
        x = self.embedding(x, training=training)  # [batch, tar_len, d_model]
        weights = {}
        for i, layer in enumerate(self.dec_layers):
            x, block1, block2 = layer(
                x,
                enc_output,
                training=training,
                look_ahead_mask=look_ahead_mask,
                padding_mask=padding_mask,
            )
            weights[decoder_attention_key(i + 1, 1)] = block1
            weights[decoder_attention_key(i + 1, 2)] = block2
        return self.normalize_output(x), weights

    def init_cache(self, enc_output, beam_size=1):
        """Per-layer decoding state for `step` (see `DecoderLayer.init_cache`)."""
        return [layer.init_cache(enc_output, beam_size) for layer in self.dec_layers]

    def reorder_cache(self, cache, indices, sentences=None):
        """`cache` for the hypotheses at rows `indices` (see `DecoderLayer.reorder_cache`)."""
        return [
            layer.reorder_cache(layer_cache, indices, sentences)
            for layer, layer_cache in zip(self.dec_layers, cache)
        ]

    def step(self, ids, position, cache, padding_mask=None, beam_size=1):
        """Decode one position incrementally: ids [batch * beam_size] at `position` ->
        output [batch * beam_size, d_model], updated cache, {"decoder_layer{i}_block2":
        encoder-decoder attention weights [batch * beam_size, heads, 1, inp_len]}."""
        x = self.embedding.embed_position(ids, position)
        new_cache, weights = [], {}
        for i, (layer, layer_cache) in enumerate(zip(self.dec_layers, cache)):
            x, layer_cache, weights[decoder_attention_key(i + 1, 2)] = layer.step(
                x, layer_cache, padding_mask, beam_size
            )
            new_cache.append(layer_cache)
        return self.normalize_output(x), new_cache, weights

    @property
    def dec_layers(self):
        return self.stack()


class Transformer(tf.keras.Model):
    """Encoder-decoder Transformer (by default the base architecture of the paper:
    post-layer-norm, ReLU feed-forward, sinusoidal positions, separate embeddings).

    Args:
        num_layers: int, layers in the encoder and in the decoder.
        d_model: int, model width.
        num_heads: int, attention heads; must divide `d_model`.
        dff: int, inner width of the feed-forward networks.
        input_vocab_size: int, source vocabulary size (id 0 is padding).
        target_vocab_size: int, target vocabulary size (id 0 is padding).
        pe_input: int, longest source sequence (positional encoding length).
        pe_target: int, longest target sequence.
        rate: float, dropout rate on embeddings and on every sublayer's output.
            Defaults to 0.1.

    Keyword-only options (their defaults keep the paper's model):
        share_embeddings: "none" (default); "decoder": the output projection uses the
            target embedding matrix (transposed, no bias); "all": source embedding, target
            embedding and output projection are one matrix (needs equal vocabulary sizes,
            i.e. a shared vocabulary). fairseq's `--share-decoder-input-output-embed` and
            `--share-all-embeddings`.
        norm: "post" (default, the paper's) or "pre": layer norm before each sublayer,
            and a final layer norm on each stack (tensor2tensor's default).
        attention_dropout: float, dropout on the attention weights. Defaults to 0.
        activation_dropout: float, dropout after the feed-forward ReLU. Defaults to 0.
        word_dropout: float, in training each source and target token's whole embedding
            is zeroed with this probability (word dropout, Gal and Ghahramani 2016).
            Defaults to 0.
        copy_attention: bool, mix copying from the source into every output distribution
            (`PointerGenerator`: the last decoder layer's encoder-decoder attention, heads
            averaged, points at source tokens); needs equal vocabulary sizes (a shared
            vocabulary). `final_output` is then log-probabilities. Defaults to False.

    Example:
        >>> model = Transformer(2, 64, 4, 128, 100, 120, pe_input=50, pe_target=50)
        >>> inp = tf.constant([[5, 6, 7, 0]])
        >>> tar = tf.constant([[2, 9, 4]])
        >>> logits, attention = model(inp, tar, training=False)
        >>> logits.shape, attention["decoder_layer1_block2"].shape
        (TensorShape([1, 3, 120]), TensorShape([1, 4, 3, 4]))

    Masks left as `None` are derived from the inputs (`create_masks`); Keras 3 takes only
    tensors positionally, so pass `training` and the masks by keyword.

    References:
        Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """

    def __init__(
        self,
        num_layers,
        d_model,
        num_heads,
        dff,
        input_vocab_size,
        target_vocab_size,
        pe_input,
        pe_target,
        rate=0.1,
        *,
        share_embeddings="none",
        norm="post",
        attention_dropout=0.0,
        activation_dropout=0.0,
        word_dropout=0.0,
        copy_attention=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if share_embeddings not in SHARE_EMBEDDINGS:
            raise ValueError(
                f"share_embeddings must be one of {SHARE_EMBEDDINGS}, got {share_embeddings!r}."
            )
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
        for option, wanted in (
            ("share_embeddings", share_embeddings == "all"),
            ("copy_attention", copy_attention),
        ):
            if wanted and input_vocab_size != target_vocab_size:
                raise ValueError(
                    f"{option} needs input_vocab_size == target_vocab_size (one vocabulary), "
                    f"got {input_vocab_size} and {target_vocab_size}."
                )
        self.num_layers = num_layers
        self.d_model = d_model
        self.num_heads = num_heads
        self.dff = dff
        self.input_vocab_size = input_vocab_size
        self.target_vocab_size = target_vocab_size
        self.pe_input = pe_input
        self.pe_target = pe_target
        self.rate = rate
        self.share_embeddings = share_embeddings
        self.norm = norm
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.word_dropout = word_dropout
        self.copy_attention = copy_attention
        # Every sublayer takes this model's dtype policy (mixed precision: float32 weights,
        # computation in bfloat16 or float16), as KerasHub passes it down; nothing global.
        dtype = self.dtype_policy
        options = dict(
            norm=norm,
            attention_dropout=attention_dropout,
            activation_dropout=activation_dropout,
            word_dropout=word_dropout,
            dtype=dtype,
        )
        shared = (
            token_embedding(target_vocab_size, d_model, "shared_embedding", dtype)
            if share_embeddings == "all"
            else None
        )
        self.encoder = Encoder(
            num_layers,
            d_model,
            num_heads,
            dff,
            input_vocab_size,
            pe_input,
            rate,
            embedding=shared,
            name="encoder",
            **options,
        )
        self.decoder = Decoder(
            num_layers,
            d_model,
            num_heads,
            dff,
            target_vocab_size,
            pe_target,
            rate,
            embedding=shared,
            name="decoder",
            **options,
        )
        if share_embeddings == "none":
            self.final_layer = tf.keras.layers.Dense(
                target_vocab_size, name="final_layer", dtype=dtype
            )
        else:
            self.final_layer = SharedOutputProjection(
                self.decoder.embedding.embedding, name="final_layer", dtype=dtype
            )
        self.pointer_generator = (
            PointerGenerator(target_vocab_size, name="pointer_generator", dtype=dtype)
            if copy_attention
            else None
        )

    def call(
        self,
        inp,
        tar,
        training=None,
        enc_padding_mask=None,
        look_ahead_mask=None,
        dec_padding_mask=None,
    ):
        if enc_padding_mask is None or look_ahead_mask is None or dec_padding_mask is None:
            derived = create_masks(inp, tar)
            enc_padding_mask = derived[0] if enc_padding_mask is None else enc_padding_mask
            look_ahead_mask = derived[1] if look_ahead_mask is None else look_ahead_mask
            dec_padding_mask = derived[2] if dec_padding_mask is None else dec_padding_mask
        enc_output, _ = self.encoder(inp, training=training, padding_mask=enc_padding_mask)
        dec_output, attention_weights = self.decoder(
            tar,
            enc_output,
            training=training,
            look_ahead_mask=look_ahead_mask,
            padding_mask=dec_padding_mask,
        )
        # [batch, tar_len, target_vocab_size]
        final_output = self.output_logits(dec_output, attention_weights, inp)
        return final_output, attention_weights

    def output_logits(self, dec_output, attention_weights, inp):
        """Next-token logits of decoder outputs [batch, tar_len, d_model] (or one position,
        [batch, d_model]): the output projection, or with `copy_attention` the
        `PointerGenerator` mixture of it and the last layer's attention (from
        `attention_weights`, as the decoder returns them) over the source ids `inp`
        [batch, inp_len]."""
        logits = self.final_layer(dec_output)
        if self.pointer_generator is None:
            return logits
        last = attention_weights[decoder_attention_key(self.num_layers, 2)]
        attention = tf.reduce_mean(last, axis=1)  # [batch, tar_len, inp_len]
        if dec_output.shape.rank == 2:
            return self.pointer_generator(
                logits[:, tf.newaxis], dec_output[:, tf.newaxis], attention, inp
            )[:, 0]
        return self.pointer_generator(logits, dec_output, attention, inp)

    @property
    def _default_save_signature(self):
        # Keras derives a one-input serving signature that cannot call a two-input model;
        # SavedModels of this package take their signatures from the `Translator`.
        return None

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "dff": self.dff,
            "input_vocab_size": self.input_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "pe_input": self.pe_input,
            "pe_target": self.pe_target,
            "rate": self.rate,
            "share_embeddings": self.share_embeddings,
            "norm": self.norm,
            "attention_dropout": self.attention_dropout,
            "activation_dropout": self.activation_dropout,
            "word_dropout": self.word_dropout,
            "copy_attention": self.copy_attention,
        }


# train.precision -> the Keras dtype policy of every layer: float32 weights, computation in
# the named dtype (softmax, layer norm and the loss stay in float32).
PRECISION_POLICIES = {
    "float32": "float32",
    "bfloat16": "mixed_bfloat16",
    "float16": "mixed_float16",
}


def build_model(model_config, precision="float32"):
    """A `Transformer` made from its arguments (a `ModelConfig`, or a dict of them), its
    weights created, computing in `precision` ("float32", "bfloat16" or "float16")."""
    options = (
        dataclasses.asdict(model_config)
        if dataclasses.is_dataclass(model_config)
        else dict(model_config)
    )
    if precision not in PRECISION_POLICIES:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISION_POLICIES)}, got {precision!r} "
            "(train.precision 'auto' is chosen by the Runner)."
        )
    model = Transformer(**options, dtype=PRECISION_POLICIES[precision])
    model(tf.ones([1, 2], tf.int32), tf.ones([1, 2], tf.int32), training=False)
    return model
