"""Subword tokenizers, run inside the TensorFlow graph by tensorflow-text, so the same ops
serve the tf.data pipeline and the SavedModel.

- SentencePiece (unigram or BPE): trained with the `sentencepiece` package, run by
  `tensorflow_text.SentencepieceTokenizer`.
- WordPiece: vocabulary built by tensorflow-text's `bert_vocab_from_dataset`, run by
  `tensorflow_text.BertTokenizer`, as the TensorFlow tutorial does, but cased and with
  accents kept (lower-casing strips German umlauts and caps BLEU).

Special ids are fixed for every tokenizer: 0 padding, 1 unknown, 2 start (BOS), 3 end (EOS).
"""

import io
import itertools
import logging
import random
import time
from pathlib import Path

import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text

from transformer_tf.errors import UserError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
RESERVED_TOKENS = ["[PAD]", "[UNK]", "[START]", "[END]"]  # WordPiece's names for ids 0-3
VOCAB_SUFFIX = {"sentencepiece": ".model", "wordpiece": ".vocab"}

log = logging.getLogger(__name__)


def _write_atomically(path, data):
    """Write bytes to `path` through a temporary name: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def train_sentencepiece(
    sentences, path, vocab_size, model_type="unigram", character_coverage=1.0, lowercase=False
):
    """Train a SentencePiece model on `sentences` and write it to `path` (.model).

    `vocab_size` is an upper bound: a small corpus yields fewer pieces rather than an error.
    `lowercase` stores a case-folding normalizer in the model: every text it tokenizes,
    in training and in serving, is folded first.
    """
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=buffer,
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            model_type=model_type,
            character_coverage=character_coverage,
            normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc",
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            num_threads=2,
            minloglevel=2,
            # The sentences are `sample_sentences` already; SentencePiece's own sampling
            # would draw from them again, so it is given room for all of them. The 2,000,000
            # floor and the shuffle keep the vocabulary of every corpus up to that size
            # exactly what it was before the sample existed (measured: they change it).
            input_sentence_size=max(2_000_000, len(sentences)),
            shuffle_input_sentence=True,
        )
    except RuntimeError as err:
        raise UserError(
            f"SentencePiece could not train '{path}' ({err}); check that the "
            "training split has text and 'tokenizer' settings are sensible."
        ) from None
    return _write_atomically(path, buffer.getvalue())


def build_wordpiece_vocab(sentences, path, vocab_size):
    """Build a cased WordPiece vocabulary of about `vocab_size` entries (ids 0-3 reserved)
    and write it to `path`, one entry per line (line N is id N)."""
    from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset

    dataset = tf.data.Dataset.from_tensor_slices(list(sentences)).batch(1000).prefetch(2)
    vocab = bert_vocab_from_dataset.bert_vocab_from_dataset(
        dataset,
        vocab_size=vocab_size,
        reserved_tokens=RESERVED_TOKENS,
        bert_tokenizer_params={"lower_case": False},
        learn_params={},
    )
    return _write_atomically(path, "".join(token + "\n" for token in vocab).encode("utf-8"))


class _Tokenizer(tf.Module):
    """What every tokenizer offers: string batches to ragged ids and back.

    Seed TensorFlow (`tf.keras.utils.set_random_seed`) before making one: seeding clears
    the kernel cache, and with it the kernels that hold the vocabulary.
    """

    vocab_size: int
    kind: str  # the `tokenizer.type` that builds it

    def tokenize(self, strings):
        """[batch] strings -> [batch, (tokens)] ragged int32, without BOS/EOS."""
        raise NotImplementedError

    def _join(self, ids):
        """[batch, (tokens)] ragged ids of real tokens -> [batch] strings."""
        raise NotImplementedError

    def detokenize(self, ids):
        """[batch, (tokens)] ragged or padded ids -> [batch] strings.

        Everything from the first EOS on (and padding) is ignored.
        """
        if not isinstance(ids, tf.RaggedTensor):
            ended = tf.cumsum(tf.cast(tf.equal(ids, EOS_ID), tf.int32), axis=1) > 0
            ids = tf.ragged.boolean_mask(ids, tf.logical_not(ended))
        keep = ids > EOS_ID  # drop padding, unknown, BOS and EOS
        return self._join(tf.ragged.boolean_mask(ids, keep))

    def vocabulary(self):
        """Every entry as a string, entry N being id N."""
        raise NotImplementedError

    def pieces(self, ids):
        """[tokens] ids -> list of subword strings, for display."""
        vocabulary = self.vocabulary()  # WordPiece keeps it in memory
        return [vocabulary[i] for i in tf.convert_to_tensor(ids).numpy()]

    def describe(self, sentence):
        """One line for people: the vocabulary's size and kind, and how `sentence` splits."""
        pieces = " ".join(self.pieces(self.tokenize([sentence])[0]))
        return f"{self.vocab_size} entries ({self.kind}); {sentence!r} -> {pieces}"


class SentencePieceTokenizer(_Tokenizer):
    """A SentencePiece model run by `tensorflow_text.SentencepieceTokenizer`.

    Args:
        model_proto: bytes, a serialized SentencePiece model.

    Example (needs a trained run's vocabulary, so not run as a doctest):
        >>> path = "runs/quickstart/vocab/source.model"
        >>> tok = SentencePieceTokenizer.from_file(path)  # doctest: +SKIP
        >>> ids = tok.tokenize(tf.constant(["The cat sat on the mat."]))  # doctest: +SKIP
        >>> tok.detokenize(ids)  # doctest: +SKIP
        <tf.Tensor: shape=(1,), dtype=string, numpy=array([b'The cat sat on the mat.'], ...)>
    """

    kind = "sentencepiece"

    def __init__(self, model_proto, name=None, nbest_size=0, alpha=1.0):
        super().__init__(name=name)
        self._model_proto = model_proto
        # A distinct op name per tokenizer: in a loaded SavedModel, unnamed SentencePiece
        # resources collapse into one, and the target side would use the source model.
        self._tokenizer = tf_text.SentencepieceTokenizer(
            model=model_proto,
            out_type=tf.int32,
            nbest_size=nbest_size,
            alpha=alpha,
            name=f"{name or 'tokenizer'}_sentencepiece",
        )
        self.vocab_size = int(self._tokenizer.vocab_size())

    def sampling(self, nbest_size, alpha):
        """This model drawing every segmentation at random (subword regularization):
        from the `nbest_size` best (-1: all) with smoothing `alpha` (a bpe model drops
        each merge with probability `alpha`). Not seeded: draws differ from call to call."""
        return SentencePieceTokenizer(
            self._model_proto, name=f"{self.name}_sampling", nbest_size=nbest_size, alpha=alpha
        )

    @classmethod
    def from_file(cls, path, name=None):
        return cls(Path(path).read_bytes(), name=name)

    def tokenize(self, strings):
        return self._tokenizer.tokenize(strings)

    def _join(self, ids):
        return self._tokenizer.detokenize(ids)

    def vocabulary(self):
        return self.pieces(tf.range(self.vocab_size))

    def pieces(self, ids):
        return [p.decode("utf-8") for p in self._tokenizer.id_to_string(ids).numpy()]


class WordPieceTokenizer(_Tokenizer):
    """A WordPiece vocabulary run by `tensorflow_text.BertTokenizer` (cased, accents kept).

    BERT's pre-tokenizer splits punctuation from words; detokenizing joins the words with
    spaces and re-attaches common punctuation, so the text is close to, not always equal
    to, the input.
    """

    kind = "wordpiece"

    def __init__(self, vocab_path, name=None):
        super().__init__(name=name)
        self._vocabulary = Path(vocab_path).read_text(encoding="utf-8").splitlines()
        self._tokenizer = tf_text.BertTokenizer(
            str(vocab_path),
            lower_case=False,
            token_out_type=tf.int32,
            unknown_token=RESERVED_TOKENS[UNK_ID],
        )
        self.vocab_size = len(self._vocabulary)

    @classmethod
    def from_file(cls, path, name=None):
        return cls(path, name=name)

    def tokenize(self, strings):
        return self._tokenizer.tokenize(strings).merge_dims(-2, -1)

    def _join(self, ids):
        text = tf.strings.reduce_join(self._tokenizer.detokenize(ids), separator=" ", axis=-1)
        text = tf.strings.regex_replace(text, r" ([.,!?;:%)\]}])", r"\1")
        return tf.strings.regex_replace(text, r"([(\[{]) ", r"\1")

    def vocabulary(self):
        return list(self._vocabulary)


TOKENIZERS = {"sentencepiece": SentencePieceTokenizer, "wordpiece": WordPieceTokenizer}


def add_bos_eos(ragged_ids, bos=True):
    """Append EOS (and prepend BOS if `bos`) to every row of a ragged id batch."""
    batch = ragged_ids.nrows()
    eos = tf.fill([batch, 1], EOS_ID)
    parts = [ragged_ids, eos]
    if bos:
        parts.insert(0, tf.fill([batch, 1], BOS_ID))
    return tf.concat(parts, axis=1)


def cut_source(ragged_ids, max_length):
    """Ragged source ids (no EOS) -> (ragged ids ending in EOS, cut to `max_length` tokens,
    [batch] bool: the row was cut). What the model reads of a source, in training and in
    decoding alike. Core TensorFlow ops only."""
    truncated = ragged_ids.row_lengths() + 1 > max_length
    return add_bos_eos(ragged_ids[:, : max_length - 1], bos=False), truncated


def finish_source(ragged_ids, max_length):
    """`cut_source`, padded: ([batch, len] ids, [batch] bool: the row was cut)."""
    ids, truncated = cut_source(ragged_ids, max_length)
    return ids.to_tensor(PAD_ID), truncated


def encode_source(tokenizer, strings, max_length):
    """Source strings -> `finish_source` of their ids: what the model reads.

    Shared by the training pipeline's length rules and the translator so both see the
    same ids.
    """
    return finish_source(tokenizer.tokenize(strings), max_length)


def vocab_path(vocab_dir, side, tokenizer_type):
    """The vocabulary file of one side ("source" or "target") in a run's vocab folder."""
    return Path(vocab_dir) / f"{side}{VOCAB_SUFFIX[tokenizer_type]}"


def load_tokenizers(vocab_dir, tokenizer_type):
    """(source, target) tokenizers from a run's vocab folder."""
    paths = [vocab_path(vocab_dir, side, tokenizer_type) for side in ("source", "target")]
    for path in paths:
        if not path.exists():
            raise UserError(
                f"'{path}' not found: the run has no {tokenizer_type} vocabulary "
                "(was it built with another tokenizer.type?); build it with "
                "transformer-tf build-vocab --config ..."
            )
    return tuple(
        TOKENIZERS[tokenizer_type].from_file(path, name=f"{side}_tokenizer")
        for side, path in zip(("source", "target"), paths)
    )


def sample_sentences(sentences, size, seed=0):
    """(at most `size` of `sentences`, how many there were): a uniform sample drawn in one
    pass over any iterable (reservoir sampling with a seeded generator), so the same corpus
    always gives the same sample; a corpus of `size` or fewer comes back whole, in order.

    >>> sample_sentences(["a", "b", "c"], 5)
    (['a', 'b', 'c'], 3)
    >>> sample, seen = sample_sentences(map(str, range(1000)), 10)
    >>> len(sample), seen, sample == sample_sentences(map(str, range(1000)), 10)[0]
    (10, 1000, True)
    """
    generator, sample, seen = random.Random(seed), [], 0
    for seen, sentence in enumerate(sentences, start=1):
        if seen <= size:
            sample.append(sentence)
        else:
            slot = generator.randrange(seen)
            if slot < size:
                sample[slot] = sentence
    return sample, seen


def _build_vocabulary(tokenizer_config, sentences, path, size):
    sentences, seen = sample_sentences(sentences, tokenizer_config.sample_size)
    drawn = f"{len(sentences):,} sentences"
    drawn += f" sampled from {seen:,}" if seen > len(sentences) else ""
    if tokenizer_config.type == "wordpiece":
        log.info(
            "building a WordPiece vocabulary (about %d entries) from %s; "
            "one to two minutes per 25,000 sentences on a CPU",
            size,
            drawn,
        )
        return build_wordpiece_vocab(sentences, path, size)
    log.info(
        "training a SentencePiece model (%s, at most %d pieces) on %s",
        tokenizer_config.model_type,
        size,
        drawn,
    )
    return train_sentencepiece(
        sentences,
        path,
        size,
        tokenizer_config.model_type,
        tokenizer_config.character_coverage,
        tokenizer_config.lowercase,
    )


def build_or_load_tokenizers(tokenizer_config, train_sources, train_targets, vocab_dir):
    """Source and target tokenizers from `vocab_dir`, built there first if absent.

    With `tokenizer_config.shared`, one vocabulary is built from both sides and stored
    under both names.
    """
    kind = tokenizer_config.type
    other = [
        p.name
        for p in Path(vocab_dir).glob("*")
        if p.suffix in VOCAB_SUFFIX.values() and p.suffix != VOCAB_SUFFIX[kind]
    ]
    if other:
        raise UserError(
            f"'{vocab_dir}' holds {', '.join(other)}, not a {kind} vocabulary; "
            "the run was started with another tokenizer.type: use a new run_dir."
        )
    paths = {side: vocab_path(vocab_dir, side, kind) for side in ("source", "target")}
    if tokenizer_config.shared:
        if not all(path.exists() for path in paths.values()):
            _build_vocabulary(
                tokenizer_config,
                itertools.chain(train_sources, train_targets),
                paths["source"],
                tokenizer_config.source_vocab_size,
            )
            _write_atomically(paths["target"], paths["source"].read_bytes())
    else:
        sides = {
            "source": (train_sources, tokenizer_config.source_vocab_size),
            "target": (train_targets, tokenizer_config.target_vocab_size),
        }
        for side, path in paths.items():
            if not path.exists():
                _build_vocabulary(tokenizer_config, sides[side][0], path, sides[side][1])
    log.info("vocabularies: %s", ", ".join(str(p) for p in paths.values()))
    return load_tokenizers(vocab_dir, kind)


def wait_for_tokenizers(tokenizer_config, vocab_dir, timeout_seconds=1800):
    """The tokenizers another process (the chief worker) is building in `vocab_dir`."""
    paths = [vocab_path(vocab_dir, side, tokenizer_config.type) for side in ("source", "target")]
    deadline = time.monotonic() + timeout_seconds
    if not all(path.exists() for path in paths):
        log.info("waiting for the chief worker to build the vocabularies in %s", vocab_dir)
    while not all(path.exists() for path in paths):
        if time.monotonic() > deadline:
            raise UserError(
                f"no vocabulary appeared in '{vocab_dir}' within {timeout_seconds} s; "
                "workers need a shared run directory, or run build-vocab first and "
                "copy the vocab folder to every machine."
            )
        time.sleep(1)
    return load_tokenizers(vocab_dir, tokenizer_config.type)
