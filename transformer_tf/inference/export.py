"""Export a trained run as a SavedModel.

Two forms:
- `export_saved_model`: strings in, translations out; tokenizers inside as tensorflow-text
  ops, so loading it needs `import tensorflow_text` (and TensorFlow's own
  `saved_model_cli run`, which cannot load those ops, cannot run it). With a source
  template, `serving_default` takes the template's fields as named string inputs and fills
  the template in the graph; the `source_text` signature takes the filled-in text.
- `export_ids_saved_model`: token ids in, token ids out, core TensorFlow ops only; the
  vocabularies travel as assets (`source.vocab`, `target.vocab`: line N is id N).
"""

import tempfile
from pathlib import Path

import tensorflow as tf

from transformer_tf.data.selection import select_sentences
from transformer_tf.data.templates import template_fields, template_parts
from transformer_tf.data.tokenizers import finish_source
from transformer_tf.inference.search import decode, output_budgets
from transformer_tf.inference.translator import SOURCE_TEXT_SIGNATURE


def _save(module, model, directory, signatures=None):
    """`tf.saved_model.save` with the model's raw `tf.Variable`s tracked by `module`;
    `signatures` default to `serving_default`: `module.__call__`.

    The traced functions read the `tf.Variable`s inside Keras 3's variables; unless those
    are tracked as well, graph-mode loaders (`saved_model_cli run`, TensorFlow Serving)
    fail with "Could not find variable" (keras-team/keras#20095).
    """
    module.raw_variables = [variable.value for variable in model.variables]
    signatures = signatures or {"serving_default": module.__call__.get_concrete_function()}
    tf.saved_model.save(module, str(directory), signatures=signatures)
    return directory


def export_saved_model(translator, directory, source_template=None, selection=None):
    """Save `translator`. Its `serving_default` signature: sentences [batch] string ->
    translations [batch] string, scores, truncated; with a `source_template`, one [batch]
    string input per field of the template instead (and `source_text`: sentences), the
    `selection` (`config.SentenceSelection`, if its field is set) cutting its field to
    the sentences that share most words with its query first, as training did."""
    if source_template is None:
        return _save(translator, translator.model, directory)
    fill, names = fill_template_function(source_template), template_fields(source_template)

    def serve_fields(*fields):
        fields = dict(zip(names, fields))
        if selection is not None and selection.field is not None:
            fields[selection.field] = select_sentences(
                fields[selection.field], fields[selection.query], selection.keep
            )
        return translator(fill(fields))

    translator.serve_fields = tf.function(
        serve_fields, input_signature=[tf.TensorSpec([None], tf.string, name=n) for n in names]
    )
    signatures = {
        "serving_default": translator.serve_fields.get_concrete_function(),
        SOURCE_TEXT_SIGNATURE: translator.__call__.get_concrete_function(),
    }
    return _save(translator, translator.model, directory, signatures)


def fill_template_function(template):
    """A function of {field: [batch] string tensor} -> [batch] string tensor: `template`
    filled in the graph (the same `template_parts` as `templates.fill_template`)."""
    parts = template_parts(template)

    def fill(fields):
        pieces = []
        for literal, name in parts:
            if literal:
                pieces.append(tf.constant(literal))
            if name:
                pieces.append(fields[name])
        return pieces[0] if len(pieces) == 1 else tf.strings.join(pieces)

    return fill


class IdsTranslator(tf.Module):
    """The translator without tokenizers: ids in, ids out.

    Args:
        translator: a `Translator`, for its model and decoding settings.
        vocab_files: {"source": path, "target": path}, written into the export's assets.
    """

    def __init__(self, translator, vocab_files):
        super().__init__()
        # The model and settings only: the tokenizers' ops are not in stock TensorFlow.
        self.model = translator.model
        self.eval_config = translator.eval_config
        self.source_vocab = tf.saved_model.Asset(str(vocab_files["source"]))
        self.target_vocab = tf.saved_model.Asset(str(vocab_files["target"]))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="source_ids")])
    def __call__(self, source_ids):
        """source_ids [batch, len]: source pieces' ids without EOS, padded with 0 ->
        {"target_ids": [batch, out_len] ids ending in EOS (3), 0 after it,
         "scores": [batch] summed log-probabilities}."""
        ragged = tf.RaggedTensor.from_tensor(source_ids, padding=0)
        source, _ = finish_source(ragged, self.model.pe_input)
        tokens, scores = decode(
            self.model,
            source,
            output_budgets(self.model, source, self.eval_config),
            self.eval_config,
        )
        return {"target_ids": tokens, "scores": scores}


def export_ids_saved_model(translator, directory):
    """Save the ids-only form of `translator` (see `IdsTranslator`)."""
    with tempfile.TemporaryDirectory() as tmp:
        vocab_files = {}
        for side in ("source", "target"):
            tokenizer = getattr(translator, f"{side}_tokenizer")
            vocab_files[side] = Path(tmp) / f"{side}.vocab"
            vocab_files[side].write_text(
                "".join(p + "\n" for p in tokenizer.vocabulary()), encoding="utf-8"
            )
        return _save(IdsTranslator(translator, vocab_files), translator.model, directory)
