"""The translator: strings in, strings out, everything in the TensorFlow graph.

The same `Translator` serves evaluation in this process and is what `export` saves as a
SavedModel, so a served model decodes exactly as `evaluate` scored it.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tensorflow as tf

from transformer_tf.data.tokenizers import BOS_ID, EOS_ID, encode_source
from transformer_tf.errors import UserError
from transformer_tf.inference.search import beam_search, decode, output_budgets
from transformer_tf.model.masks import create_padding_mask
from transformer_tf.model.transformer import decoder_attention_key

# Batches decoded at the same time. A decoding step is a chain of small ops that leaves a
# core idle much of the time; a second batch in flight fills it (measured on 2 cores:
# 1.6 times the sentences per second of one batch at a time, same outputs).
BATCHES_IN_FLIGHT = 2

log = logging.getLogger("transformer_tf")

# The signature of an export with a source template that takes the filled-in source text.
SOURCE_TEXT_SIGNATURE = "source_text"


def translate_in_batches(translate, inputs, batch_size=64):
    """Run `translate` (a Translator or a loaded `serving_default`) over `inputs`, {input
    name: list of strings} (`{"sentences": [...]}`, or one list per field of a source
    template), in batches of similar length; return its outputs as lists in input order.

    Empty examples (every input blank) are not sent to the model: their output is empty.
    Inputs longer than the model reads are named in one warning.
    """
    columns = list(inputs.values())
    count = len(columns[0])
    lengths = [sum(len(column[i]) for column in columns) for i in range(count)]
    order = sorted(
        (i for i in range(count) if any(column[i].strip() for column in columns)),
        key=lambda i: lengths[i],
    )
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    outputs = {"translations": [""] * count, "scores": [0.0] * count, "truncated": [False] * count}

    def run(indices):
        return translate(
            **{name: tf.constant([column[i] for i in indices]) for name, column in inputs.items()}
        )

    with ThreadPoolExecutor(BATCHES_IN_FLIGHT) as pool:
        for indices, result in zip(batches, pool.map(run, batches)):
            for key, values in result.items():
                for i, value in zip(indices, values.numpy().tolist()):
                    outputs[key][i] = value.decode("utf-8") if isinstance(value, bytes) else value
    _warn_truncated(outputs["truncated"])
    return outputs


def _warn_truncated(truncated, shown=5):
    """One warning for all the inputs longer than the model reads (their ends were not
    translated), naming the first few by line number."""
    lines = [number for number, cut in enumerate(truncated, start=1) if cut]
    if lines:
        more = f" and {len(lines) - shown} more" if len(lines) > shown else ""
        log.warning(
            "warning: %d of %d inputs are longer than the model reads (model.pe_input "
            "tokens); their ends were not used: line %s%s.",
            len(lines),
            len(truncated),
            ", ".join(map(str, lines[:shown])),
            more,
        )


_beam_search = tf.function(beam_search)


class Translator(tf.Module):
    """Tokenize, decode (greedy, beam search or sampling), detokenize.

    Args:
        model: a trained `Transformer`.
        source_tokenizer, target_tokenizer: the run's tokenizers
            (`transformer_tf.data.tokenizers`).
        eval_config: `EvalConfig`, the decoding settings (beam_size, length_penalty,
            sampling_topk, sampling_temperature, no_repeat_ngram_size, max_length_ratio,
            max_length_offset).
        step: int, training step of the weights, for the record.
        averaged: int, how many checkpoints (the last, up to `step`) the weights are the mean
            of, for the record; 1: one checkpoint.

    `model` may be an `Ensemble` of Transformers (`inference/ensemble.py`).

    A trained run's translator comes from `Runner(config).translator()`.

    Example (needs a trained model and its tokenizers, so not run as a doctest):
        >>> translator = Translator(model, source, target, EvalConfig())  # doctest: +SKIP
        >>> sentences = tf.constant(["The cat sat on the mat."])
        >>> translator(sentences)["translations"]  # doctest: +SKIP
        <tf.Tensor: shape=(1,), dtype=string, numpy=array([b'Die Katze ...'], dtype=object)>
    """

    def __init__(
        self, model, source_tokenizer, target_tokenizer, eval_config, step=0, averaged=1, name=None
    ):
        super().__init__(name=name)
        self.model = model
        self.step = step
        self.averaged = averaged
        # Models decoding together (an `Ensemble`), for the record; 1: one model.
        self.ensemble_size = len(getattr(model, "models", [model]))
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.eval_config = eval_config

    def encode(self, sentences):
        """[batch] strings -> (source ids [batch, len], decoding budgets [batch])."""
        source, _ = self._source_ids(sentences)
        return source, self.budgets(source)

    def _source_ids(self, sentences):
        """(source ids [batch, len], truncated [batch] bool) of [batch] strings. Bytes that
        are not UTF-8 become U+FFFD first: a served model takes any bytes from a client, and
        one bad line must not fail its whole batch."""
        sentences = tf.strings.unicode_transcode(sentences, "UTF-8", "UTF-8", errors="replace")
        return encode_source(self.source_tokenizer, sentences, self.model.pe_input)

    def budgets(self, source):
        """Most tokens each sentence may produce, EOS included: [batch] int32."""
        return output_budgets(self.model, source, self.eval_config)

    def search(self, source, max_lengths):
        """The configured search: (tokens [batch, len], scores [batch])."""
        return decode(self.model, source, max_lengths, self.eval_config)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def __call__(self, sentences):
        """[batch] UTF-8 strings -> {"translations": [batch] strings, "scores": [batch]
        float32 (summed log-probabilities of the output tokens), "truncated": [batch] bool
        (the input had more tokens than the model reads, `pe_input`; the rest was ignored)}.
        """
        source, truncated = self._source_ids(sentences)
        tokens, scores = self.search(source, self.budgets(source))
        return {
            "translations": self.target_tokenizer.detokenize(tokens),
            "scores": scores,
            "truncated": truncated,
        }

    def translate(self, sentences: list[str], batch_size: int = 64) -> list[str]:
        """Translate a Python list of strings, batched by length, in input order."""
        return translate_in_batches(self, {"sentences": sentences}, batch_size)["translations"]

    def n_best(
        self, sentences: list[str], n: int, batch_size: int = 64
    ) -> list[list[tuple[str, float]]]:
        """Each sentence's `n` best translations by beam search (of `n` beams, or more if
        the config says so): a list per sentence of (translation, score) pairs, best
        first; score is the summed log-probability."""
        beam_size = max(n, self.eval_config.beam_size)
        results = []
        for start in range(0, len(sentences), batch_size):
            source, budgets = self.encode(tf.constant(sentences[start : start + batch_size]))
            tokens, scores = _beam_search(
                self.model,
                source,
                budgets,
                beam_size,
                self.eval_config.length_penalty,
                n,
                self.eval_config.no_repeat_ngram_size,
            )
            texts = self.target_tokenizer.detokenize(tf.reshape(tokens, [-1, tokens.shape[2]]))
            texts = [t.decode("utf-8") for t in texts.numpy()]
            for row, row_scores in enumerate(scores.numpy().tolist()):
                results.append(list(zip(texts[row * n : (row + 1) * n], row_scores)))
        return results

    def attention(self, sentence: str) -> dict:
        """Translate one sentence and return what its decoder attended to.

        Returns {"translation": str, "source_tokens": [pieces], "target_tokens": [pieces,
        EOS included],
        "attention": {"decoder_layer{i}_block2": [heads, target_len, source_len] numpy},
        the encoder-decoder attention of every decoder layer, first to last,
        "encoder_attention": {"encoder_layer{i}": [heads, source_len, source_len] numpy},
        the self-attention of every encoder layer}.
        """
        source, max_lengths = self.encode(tf.constant([sentence]))
        tokens, _ = self.search(source, max_lengths)
        tokens = tokens[0].numpy().tolist()
        if EOS_ID in tokens:
            tokens = tokens[: tokens.index(EOS_ID) + 1]
        decoder_input = tf.constant([[BOS_ID] + tokens[:-1]], tf.int32)
        _, weights = self.model(source, decoder_input, training=False)
        _, encoder_weights = self.model.encoder(
            source, training=False, padding_mask=create_padding_mask(source)
        )
        return {
            "translation": self.target_tokenizer.detokenize(tf.constant([tokens], tf.int32))[0]
            .numpy()
            .decode("utf-8"),
            "source_tokens": self.source_tokenizer.pieces(source[0]),
            "target_tokens": self.target_tokenizer.pieces(tf.constant(tokens, tf.int32)),
            "attention": {
                key: weights[key][0].numpy()
                for key in (decoder_attention_key(i + 1, 2) for i in range(self.model.num_layers))
            },
            "encoder_attention": {
                name: value[0].numpy() for name, value in encoder_weights.items()
            },
        }


class ServedTranslator:
    """A SavedModel exported by this package, behind the `Translator`'s list interface.

    Loading it needs only TensorFlow and tensorflow-text.

    Args:
        directory: str or Path, the SavedModel directory.

    Raises:
        UserError: `directory` holds no SavedModel.
    """

    def __init__(self, directory):
        import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

        if not (Path(directory) / "saved_model.pb").is_file():
            raise UserError(
                f"no SavedModel in '{directory}'; run `transformer-tf export` first "
                "or pass --saved-model DIR."
            )
        self.step = None  # not recorded in the SavedModel
        signatures = tf.saved_model.load(str(directory)).signatures
        self.signature = signatures["serving_default"]
        # A model exported with a source template takes its fields by name; it also has
        # the signature of the filled-in source text, which evaluation uses.
        self.text_signature = signatures.get(SOURCE_TEXT_SIGNATURE, self.signature)

    def translate(self, sentences: list[str], batch_size: int = 64) -> list[str]:
        """Translations of `sentences` (a list of str), in order; one warning names the
        sentences longer than the model reads (their ends are not translated)."""
        return translate_in_batches(self.text_signature, {"sentences": sentences}, batch_size)[
            "translations"
        ]

    @property
    def input_names(self) -> list[str]:
        """The names of the model's string inputs: `sentences`, or the fields of the source
        template it was exported with (e.g. `question`, `context`)."""
        return list(self.signature.structured_input_signature[1])

    def generate(self, inputs: dict[str, list[str]], batch_size: int = 64) -> list[str]:
        """Outputs for `inputs`, {input name: list of strings}, in order."""
        return translate_in_batches(self.signature, inputs, batch_size)["translations"]

    def generate_records(self, records: list[tuple[str, dict]], batch_size: int = 64) -> list[str]:
        """Outputs for JSON records, (where, record) pairs as `sources.parse_records` makes
        them, each holding the model's `input_names` as string fields; a missing or
        non-string field is refused in one sentence naming where the record is."""
        names = self.input_names
        for where, record in records:
            missing = [n for n in names if not isinstance(record.get(n), str)]
            if missing:
                raise UserError(
                    f"{where} has no string field {missing[0]!r}; this model takes "
                    f"{', '.join(names)}."
                )
        return self.generate({n: [r[n] for _, r in records] for n in names}, batch_size)
