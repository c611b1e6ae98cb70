"""Export a trained model as a CTranslate2 model directory.

CTranslate2 (pip `ctranslate2`) is a C++ inference engine for Transformers. Its
`TransformerSpec` describes this package's architecture exactly: post- or pre-layer-norm
layers (pre-norm with a final layer norm on each stack), ReLU feed-forward networks,
embeddings scaled by sqrt(d_model), and positions added from a table (this package's
sinusoidal table is written into the model, since CTranslate2's own sinusoids are laid out
differently). Tied embeddings are written as copies of the one matrix (the output projection
then has no bias). Weights are written in float32; CTranslate2 quantizes at load time if
asked (`compute_type="int8"`).

The directory also holds the run's tokenizer files, so a user has all that decoding
needs: tokenize to pieces, `ctranslate2.Translator(directory).translate_batch(pieces)`,
detokenize. CTranslate2 appends the end-of-sentence token to each source itself.
"""

import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from transformer_tf.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from transformer_tf.errors import UserError
from transformer_tf.model.layers import LAYER_NORM_EPSILON


def _ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise UserError(
            "export --format ctranslate2 needs the ctranslate2 package: "
            "pip install 'transformer_tf[ctranslate2]'."
        ) from None
    return ctranslate2


def _dense(spec, *layers):
    """Set a CTranslate2 linear spec from Keras Dense layers; several are stacked into one
    fused projection (queries, keys, values). Keras kernels are [in, out], CTranslate2
    weights [out, in]."""
    spec.weight = np.concatenate([layer.kernel.numpy().T for layer in layers])
    spec.bias = np.concatenate([layer.bias.numpy() for layer in layers])


def _output_projection(spec, model):
    """The output layer: a Dense layer, or the target embedding matrix (tied, no bias),
    which is already [vocab, d_model] as CTranslate2 wants it."""
    if model.share_embeddings == "none":
        _dense(spec, model.final_layer)
    else:
        spec.weight = model.final_layer.embedding.embeddings.numpy()


def _layer_norm(spec, layer):
    spec.gamma = layer.gamma.numpy()
    spec.beta = layer.beta.numpy()


def _embedding(spec, positional_embedding, position_spec):
    """Token embeddings (scaled by sqrt(d_model) in CTranslate2 too) and the position
    table."""
    spec.weight = positional_embedding.embedding.embeddings.numpy()
    position_spec.encodings = positional_embedding.pos_encoding.numpy()[0]


def transformer_spec(model):
    """The CTranslate2 `TransformerSpec` of `model`, weights set."""
    if model.copy_attention:
        raise UserError(
            "CTranslate2 has no copy attention (model.copy_attention: true): serve this "
            "model with its SavedModel (export/) instead."
        )
    ctranslate2 = _ctranslate2()
    spec = ctranslate2.specs.TransformerSpec.from_config(
        model.num_layers,
        model.num_heads,
        pre_norm=model.norm == "pre",
        activation=ctranslate2.specs.Activation.RELU,
    )
    encoder, decoder = model.encoder, model.decoder
    _embedding(spec.encoder.embeddings[0], encoder.embedding, spec.encoder.position_encodings)
    for layer_spec, layer in zip(spec.encoder.layer, encoder.enc_layers):
        attention = layer.self_attention
        _dense(layer_spec.self_attention.linear[0], attention.wq, attention.wk, attention.wv)
        _dense(layer_spec.self_attention.linear[1], attention.dense)
        _layer_norm(layer_spec.self_attention.layer_norm, layer.layernorm1)
        _dense(layer_spec.ffn.linear_0, layer.feed_forward.inner)
        _dense(layer_spec.ffn.linear_1, layer.feed_forward.outer)
        _layer_norm(layer_spec.ffn.layer_norm, layer.layernorm2)
    if model.norm == "pre":
        _layer_norm(spec.encoder.layer_norm, encoder.final_norm)
    _embedding(spec.decoder.embeddings, decoder.embedding, spec.decoder.position_encodings)
    for layer_spec, layer in zip(spec.decoder.layer, decoder.dec_layers):
        own, cross = layer.self_attention, layer.cross_attention
        _dense(layer_spec.self_attention.linear[0], own.wq, own.wk, own.wv)
        _dense(layer_spec.self_attention.linear[1], own.dense)
        _layer_norm(layer_spec.self_attention.layer_norm, layer.layernorm1)
        _dense(layer_spec.attention.linear[0], cross.wq)
        _dense(layer_spec.attention.linear[1], cross.wk, cross.wv)
        _dense(layer_spec.attention.linear[2], cross.dense)
        _layer_norm(layer_spec.attention.layer_norm, layer.layernorm2)
        _dense(layer_spec.ffn.linear_0, layer.feed_forward.inner)
        _dense(layer_spec.ffn.linear_1, layer.feed_forward.outer)
        _layer_norm(layer_spec.ffn.layer_norm, layer.layernorm3)
    if model.norm == "pre":
        _layer_norm(spec.decoder.layer_norm, decoder.final_norm)
    _output_projection(spec.decoder.projection, model)
    return spec


def _padded(vocabulary, size):
    """The tokenizer's entries, then placeholders for the ids the model has beyond them
    (its vocabulary sizes are rounded up to a multiple of 8)."""
    return vocabulary + [f"<unused{i}>" for i in range(len(vocabulary), size)]


def export_ctranslate2(translator, directory, tokenizer_files=()):
    """Write `translator`'s model as a CTranslate2 model in `directory` (replaced if it
    exists), with copies of `tokenizer_files`. Returns the directory."""
    model = translator.model
    spec = transformer_spec(model)
    source_vocabulary = _padded(translator.source_tokenizer.vocabulary(), model.input_vocab_size)
    target_vocabulary = _padded(translator.target_tokenizer.vocabulary(), model.target_vocab_size)
    spec.register_source_vocabulary(source_vocabulary)
    spec.register_target_vocabulary(target_vocabulary)
    config = spec.config
    config.unk_token = target_vocabulary[UNK_ID]
    config.bos_token = config.decoder_start_token = target_vocabulary[BOS_ID]
    config.eos_token = target_vocabulary[EOS_ID]
    config.add_source_eos = True  # the model was trained on sources ending in EOS
    config.layer_norm_epsilon = LAYER_NORM_EPSILON
    spec.validate()
    spec.optimize(quantization=None)
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    spec.save(str(directory))
    for path in tokenizer_files:
        shutil.copy(path, directory / Path(path).name)
    return directory


def load_ctranslate2(directory, threads=0):
    """A `ctranslate2.Translator` of an exported model on the CPU, in float32 (`threads`
    0: CTranslate2's default)."""
    return _ctranslate2().Translator(
        str(directory), device="cpu", compute_type="float32", intra_threads=threads
    )


def translate_ctranslate2(engine, translator, sentences, batch_size=64, beam_size=1, **options):
    """Translate a list of strings with a CTranslate2 `engine`, tokenized, length-limited
    and detokenized as `translator` does, so that greedy outputs compare token for token.
    CTranslate2 batches by length itself (`batch_size` sentences at a time). `options` go
    to `translate_batch` as they are: its `length_penalty` (score / length ** penalty) is
    not the package's GNMT alpha; 0 in both ranks by the summed log-probability alike."""
    # The package's own encoding (pieces cut to what the model reads, EOS, padding), so that
    # both engines see the same source; CTranslate2 adds the EOS back itself.
    source, budgets = translator.encode(tf.constant(sentences))
    budgets = budgets.numpy().tolist()
    source_vocabulary = translator.source_tokenizer.vocabulary()
    pieces = [
        [source_vocabulary[i] for i in row if i not in (PAD_ID, EOS_ID)]
        for row in source.numpy().tolist()
    ]
    results = engine.translate_batch(
        pieces,
        beam_size=beam_size,
        max_batch_size=batch_size,
        max_decoding_length=max(budgets, default=1),
        **options,
    )
    target_ids = {piece: i for i, piece in enumerate(translator.target_tokenizer.vocabulary())}
    # At its budget the package forces EOS: budget - 1 tokens at most, then EOS.
    outputs = [
        [target_ids.get(piece, UNK_ID) for piece in result.hypotheses[0][: budget - 1]]
        for result, budget in zip(results, budgets)
    ]
    texts = translator.target_tokenizer.detokenize(
        tf.ragged.constant(outputs, dtype=tf.int32, ragged_rank=1)
    )
    return [text.decode("utf-8") for text in texts.numpy().tolist()]
