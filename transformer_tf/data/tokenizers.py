"""Subword tokenizers: trained with the `sentencepiece` package, run inside the TensorFlow
graph by tensorflow-text, so the same ops serve the tf.data pipeline and the SavedModel.

Special ids are fixed for every tokenizer: 0 padding, 1 unknown, 2 start (BOS), 3 end (EOS).
"""

import io
import logging
from pathlib import Path

import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text

from transformer_tf.errors import UserError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

log = logging.getLogger(__name__)


def round_up(value, multiple=8):
    return -(-value // multiple) * multiple


def train_sentencepiece(sentences, path, vocab_size, model_type="unigram",
                        character_coverage=1.0):
    """Train a SentencePiece model on `sentences` and write it to `path` (.model).

    `vocab_size` is an upper bound: a small corpus yields fewer pieces rather than an error.
    """
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=buffer, vocab_size=vocab_size,
            hard_vocab_limit=False, model_type=model_type,
            character_coverage=character_coverage, pad_id=PAD_ID, unk_id=UNK_ID,
            bos_id=BOS_ID, eos_id=EOS_ID, num_threads=2, minloglevel=2)
    except RuntimeError as err:
        raise UserError(f"SentencePiece could not train '{path}' ({err}); check that the "
                        "training split has text and 'tokenizer' settings are sensible.") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)  # atomic: a crash never leaves half a model
    return path


class SubwordTokenizer(tf.Module):
    """A SentencePiece model run by `tensorflow_text.SentencepieceTokenizer`.

    Seed TensorFlow (`tf.keras.utils.set_random_seed`) before making one: seeding clears
    the kernel cache, and with it the kernel that holds the SentencePiece model.

    Args:
        model_proto: bytes, a serialized SentencePiece model.

    Example:
        >>> tok = SubwordTokenizer(Path("runs/quickstart/vocab/source.model").read_bytes())
        >>> ids = tok.tokenize(tf.constant(["The cat sat on the mat."]))  # ragged int32
        >>> tok.detokenize(ids)
    """

    def __init__(self, model_proto, name=None):
        super().__init__(name=name)
        # A distinct op name per tokenizer: in a loaded SavedModel, unnamed SentencePiece
        # resources collapse into one, and the target side would use the source model.
        self._tokenizer = tf_text.SentencepieceTokenizer(
            model=model_proto, out_type=tf.int32, name=f"{name or 'tokenizer'}_sentencepiece")
        self.vocab_size = int(self._tokenizer.vocab_size())

    @classmethod
    def from_file(cls, path, name=None):
        return cls(Path(path).read_bytes(), name=name)

    def tokenize(self, strings):
        """[batch] strings -> [batch, (tokens)] ragged int32, without BOS/EOS."""
        return self._tokenizer.tokenize(strings)

    def detokenize(self, ids):
        """[batch, (tokens)] ragged or padded ids -> [batch] strings.

        Everything from the first EOS on (and padding) is ignored.
        """
        if not isinstance(ids, tf.RaggedTensor):
            ended = tf.cumsum(tf.cast(tf.equal(ids, EOS_ID), tf.int32), axis=1) > 0
            ids = tf.ragged.boolean_mask(ids, tf.logical_not(ended))
        keep = ids > EOS_ID  # drop padding, unknown, BOS and EOS
        return self._tokenizer.detokenize(tf.ragged.boolean_mask(ids, keep))

    def pieces(self, ids):
        """[tokens] ids -> list of subword strings, for display."""
        return [p.decode("utf-8") for p in self._tokenizer.id_to_string(ids).numpy()]


def add_bos_eos(ragged_ids, bos=True):
    """Append EOS (and prepend BOS if `bos`) to every row of a ragged id batch."""
    batch = ragged_ids.nrows()
    eos = tf.fill([batch, 1], EOS_ID)
    parts = [ragged_ids, eos]
    if bos:
        parts.insert(0, tf.fill([batch, 1], BOS_ID))
    return tf.concat(parts, axis=1)


def finish_source(ragged_ids, max_length):
    """Ragged source ids (no EOS) -> (padded [batch, len] ids ending in EOS and cut to
    `max_length` tokens, [batch] bool: the row was cut). Core TensorFlow ops only."""
    truncated = ragged_ids.row_lengths() + 1 > max_length
    ids = add_bos_eos(ragged_ids[:, : max_length - 1], bos=False).to_tensor(PAD_ID)
    return ids, truncated


def encode_source(tokenizer, strings, max_length):
    """Source strings -> `finish_source` of their ids: what the model reads.

    Shared by the training pipeline's length rules and the translator so both see the
    same ids.
    """
    return finish_source(tokenizer.tokenize(strings), max_length)


def build_or_load_tokenizers(tokenizer_config, train_sources, train_targets, vocab_dir):
    """Source and target tokenizers from `vocab_dir`, trained there first if absent."""
    vocab_dir = Path(vocab_dir)
    paths = {"source": vocab_dir / "source.model", "target": vocab_dir / "target.model"}
    sides = {"source": (train_sources, tokenizer_config.source_vocab_size),
             "target": (train_targets, tokenizer_config.target_vocab_size)}
    tokenizers = {}
    for side, path in paths.items():
        if path.exists():
            log.info("using the %s vocabulary in %s", side, path)
        else:
            sentences, size = sides[side]
            log.info("training a %s SentencePiece model (%s, at most %d pieces) on %d sentences",
                     side, tokenizer_config.model_type, size, len(sentences))
            train_sentencepiece(sentences, path, size, tokenizer_config.model_type,
                                tokenizer_config.character_coverage)
        tokenizers[side] = SubwordTokenizer.from_file(path, name=f"{side}_tokenizer")
    return tokenizers["source"], tokenizers["target"]
