"""Several trained Transformers of one vocabulary decoding as one model.

At every step the ensemble's distribution is the mean of its members' probabilities
(fairseq's `--path a.pt:b.pt`); greedy and beam search run on it unchanged, because an
`Ensemble` answers the calls they make of a `Transformer`: `encoder(...)`,
`decoder.init_cache / step / reorder_cache`, `output_logits`, `pe_input`, `pe_target`. The
members' encoder outputs and decoder states travel side by side, concatenated on the last
axis, so the search's per-row bookkeeping (repeat, gather) moves them together; their
attention weights travel as a list, one per member, for the members that copy from the
source (`model.copy_attention`) to point with their own.
"""

import math

import tensorflow as tf


class Ensemble(tf.Module):
    """Decode with the mean distribution of `models`.

    Args:
        models: list of two or more `Transformer`s with the same `d_model` and target
            vocabulary (trained on the same tokenizers).

    Attention weights (`Translator.attention`) are those of the first member.
    """

    def __init__(self, models, name=None):
        super().__init__(name=name)
        first = models[0]
        for model in models[1:]:
            if (model.d_model, model.target_vocab_size) != (first.d_model, first.target_vocab_size):
                raise ValueError(
                    "ensemble members need the same d_model and target vocabulary, got "
                    f"{(first.d_model, first.target_vocab_size)} and "
                    f"{(model.d_model, model.target_vocab_size)}"
                )
        self.models = list(models)
        self.encoder = _Encoders(self.models)
        self.decoder = _Decoders(self.models)
        self.pe_input = min(model.pe_input for model in self.models)
        self.pe_target = min(model.pe_target for model in self.models)
        self.num_layers = first.num_layers
        # The searches give a copying model the source ids (one row per hypothesis).
        self.copy_attention = any(model.copy_attention for model in self.models)

    @property
    def variables(self):
        return [variable for model in self.models for variable in model.variables]

    def output_logits(self, x, attention_weights, inp):
        """x: the members' decoder outputs side by side, [..., members * d_model] ->
        log of the mean of their probabilities, [..., vocab] (normalised log-probs).
        `attention_weights` (one per member, as the decoders return them) and the source
        ids `inp` are read by the members that copy."""
        parts = tf.split(x, len(self.models), axis=-1)
        log_probs = [
            tf.nn.log_softmax(tf.cast(model.output_logits(part, w, inp), tf.float32), axis=-1)
            for model, part, w in zip(self.models, parts, attention_weights)
        ]
        return tf.reduce_logsumexp(tf.stack(log_probs), axis=0) - math.log(len(self.models))

    def __call__(self, inp, tar, training=False, **masks):
        """The first member's forward pass (what `Translator.attention` reads)."""
        return self.models[0](inp, tar, training=training, **masks)


class _Encoders:
    """The members' encoders: outputs side by side; attention weights of the first (what
    `Translator.attention` shows)."""

    def __init__(self, models):
        self.models = models

    def __call__(self, source, training=False, padding_mask=None):
        outputs = [
            m.encoder(source, training=training, padding_mask=padding_mask) for m in self.models
        ]
        return tf.concat([output for output, _ in outputs], axis=-1), outputs[0][1]


class _Decoders:
    """The members' decoders, stepping together: one cache and one set of attention
    weights per member."""

    def __init__(self, models):
        self.models = models

    def init_cache(self, enc_output, beam_size=1):
        parts = tf.split(enc_output, len(self.models), axis=-1)
        return [m.decoder.init_cache(part, beam_size) for m, part in zip(self.models, parts)]

    def reorder_cache(self, cache, indices, sentences=None):
        return [m.decoder.reorder_cache(c, indices, sentences) for m, c in zip(self.models, cache)]

    def step(self, ids, position, cache, padding_mask=None, beam_size=1):
        steps = [
            m.decoder.step(ids, position, c, padding_mask, beam_size)
            for m, c in zip(self.models, cache)
        ]
        x = tf.concat([output for output, _, _ in steps], axis=-1)
        return x, [new_cache for _, new_cache, _ in steps], [weights for _, _, weights in steps]

    def __call__(self, x, enc_output, training=False, look_ahead_mask=None, padding_mask=None):
        parts = tf.split(enc_output, len(self.models), axis=-1)
        outputs = [
            m.decoder(
                x,
                part,
                training=training,
                look_ahead_mask=look_ahead_mask,
                padding_mask=padding_mask,
            )
            for m, part in zip(self.models, parts)
        ]
        return tf.concat([output for output, _ in outputs], axis=-1), [w for _, w in outputs]
