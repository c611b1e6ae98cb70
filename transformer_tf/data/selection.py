"""Sentence selection: the sentences of a long field that share the most words with a
query field, as the input a model reads (`data.select_sentences`).

A question about a story is answered from one or two of its sentences; a small model trained
from scratch finds them more easily when the story is cut to the sentences that share words
with the question (the overlap baseline of extractive question answering, Chen et al.,
"Reading Wikipedia to Answer Open-Domain Questions", 2017, ranks paragraphs the same way).

One implementation in TensorFlow ops serves everything: training and evaluation call it on
batches of records, an exported SavedModel in its graph, and `bench/baselines.py` for the
overlap baseline (`keep=1`).
"""

import tensorflow as tf

# A sentence ends at ".", "!" or "?" followed by white space (RE2 has no look-behind: the
# end is marked, then split on). Words are runs of letters, digits and "_", lower-cased.
_SENTENCE_END, _MARK = r"([.!?])\s+", "\x00"
_NOT_WORD = r"[^\pL\pN_]+"


def _words(texts):
    """[n] strings -> ragged [n, (words)]: each text's lower-cased words."""
    spaced = tf.strings.regex_replace(tf.strings.lower(texts, encoding="utf-8"), _NOT_WORD, " ")
    return tf.strings.split(tf.strings.strip(spaced))


_STRINGS = tf.TensorSpec([None], tf.string)


@tf.function(input_signature=[_STRINGS, _STRINGS, tf.TensorSpec([], tf.int32)])
def _select(texts, queries, keep):
    """`select_sentences` on [batch] string tensors, compiled once for every batch."""
    marked = tf.strings.regex_replace(tf.strings.strip(texts), _SENTENCE_END, r"\1" + _MARK)
    sentences = tf.strings.split(marked, _MARK)  # [batch, (sentences)]
    lengths = sentences.row_lengths()  # [batch]
    words = _words(sentences.flat_values)  # [all sentences, (words)]
    query_words = tf.gather(_words(queries), sentences.value_rowids())  # [all sentences, (q)]
    shared = tf.sets.size(tf.sets.intersection(words.to_sparse(), query_words.to_sparse()))
    # Rank by shared distinct words, then by position (earlier first): shared * n - position.
    positions = tf.ragged.range(lengths).flat_values
    keys = tf.cast(shared, tf.int64) * (tf.reduce_max(lengths) + 1) - positions
    dense_keys = sentences.with_flat_values(keys).to_tensor(default_value=-(2**62))
    dense_keys = tf.ensure_shape(dense_keys, [None, None])  # padding ranks last
    top = tf.math.top_k(dense_keys, k=tf.minimum(keep, tf.shape(dense_keys)[1])).indices
    top = tf.sort(tf.cast(top, tf.int64), axis=1)  # [batch, k], back to text order
    chosen = tf.ragged.boolean_mask(top, top < tf.expand_dims(lengths, 1))
    picked = tf.gather(sentences, chosen, batch_dims=1)
    return tf.strings.reduce_join(picked, axis=1, separator=" ")


def select_sentences(texts, queries, keep):
    """The `keep` sentences of each text that share the most distinct words (lower-cased)
    with its query, in their order in the text, joined by a space; ties go to the earlier
    sentence. A text of `keep` sentences or fewer is returned whole (its sentences joined).

    Args:
        texts: [batch] string tensor (or list of str): the long field, e.g. a story.
        queries: [batch] string tensor (or list of str): e.g. the questions.
        keep: int >= 1, how many sentences to keep.

    Returns:
        [batch] string tensor.

    Example:
        >>> story = "A king had a daughter. The sun was hot. The daughter sang."
        >>> select_sentences([story], ["Who sang, the daughter?"], 1).numpy()[0].decode()
        'The daughter sang.'
    """
    strings = (tf.convert_to_tensor(t, tf.string) for t in (texts, queries))
    return _select(*strings, tf.constant(keep, tf.int32))
