"""The translator: strings in, strings out, everything in the TensorFlow graph.

The same `Translator` serves evaluation in this process and is what `export` saves as a
SavedModel, so a served model decodes exactly as `evaluate` scored it.
"""

import tensorflow as tf

from transformer_tf.data.tokenizers import BOS_ID, EOS_ID, encode_source
from transformer_tf.inference.search import beam_search, greedy_search, max_output_lengths
from transformer_tf.run import load_tokenizers, restore_model


class Translator(tf.Module):
    """Tokenize, decode (greedy, beam search or sampling), detokenize.

    Args:
        model: a trained `Transformer`.
        source_tokenizer, target_tokenizer: `SubwordTokenizer`s of the run.
        eval_config: `EvalConfig`, the decoding settings (beam_size, length_penalty,
            sampling_topk, sampling_temperature, max_length_ratio, max_length_offset).
        step: int, training step of the weights, for the record.

    Example:
        >>> translator = Translator(model, source_tokenizer, target_tokenizer, EvalConfig())
        >>> translator(tf.constant(["The cat sat on the mat."]))["translations"]
    """

    def __init__(self, model, source_tokenizer, target_tokenizer, eval_config, step=0,
                 name=None):
        super().__init__(name=name)
        self.model = model
        self.step = step
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.beam_size = eval_config.beam_size
        self.length_penalty = eval_config.length_penalty
        self.sampling_topk = eval_config.sampling_topk
        self.sampling_temperature = eval_config.sampling_temperature
        self.max_length_ratio = eval_config.max_length_ratio
        self.max_length_offset = eval_config.max_length_offset

    @classmethod
    def from_run(cls, config, average_last=1):
        """The translator of a trained run: its tokenizers and latest checkpoint (or the
        mean of its last `average_last` checkpoints), decoding as `config.eval` says."""
        model, step = restore_model(config.run_dir, config.model, average_last)
        return cls(model, *load_tokenizers(config.run_dir), config.eval, step=step)

    def encode(self, sentences):
        """[batch] strings -> (source ids [batch, len], decoding budgets [batch])."""
        source = encode_source(self.source_tokenizer, sentences, self.model.pe_input)
        return source, max_output_lengths(source, self.max_length_ratio,
                                          self.max_length_offset, self.model.pe_target - 1)

    def search(self, source, max_lengths):
        """The configured search: (tokens [batch, len], scores [batch])."""
        if self.beam_size > 1:
            tokens, scores = beam_search(self.model, source, max_lengths, self.beam_size,
                                         self.length_penalty)
            return tokens[:, 0], scores[:, 0]
        return greedy_search(self.model, source, max_lengths, sampling_topk=self.sampling_topk,
                             sampling_temperature=self.sampling_temperature)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def __call__(self, sentences):
        """[batch] UTF-8 strings -> {"translations": [batch] strings, "scores": [batch] float32}.

        Scores are the sums of the log-probabilities of the output tokens.
        """
        tokens, scores = self.search(*self.encode(sentences))
        return {"translations": self.target_tokenizer.detokenize(tokens), "scores": scores}

    def translate(self, sentences, batch_size=64):
        """Translate a Python list of strings in batches of similar length, in input order."""
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        outputs = [None] * len(sentences)
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            result = self(tf.constant([sentences[i] for i in indices]))
            for i, text in zip(indices, result["translations"].numpy()):
                outputs[i] = text.decode("utf-8")
        return outputs

    def attention(self, sentence):
        """Translate one sentence and return what its decoder attended to.

        Returns {"source_tokens": [pieces], "target_tokens": [pieces, EOS included],
        "attention": {"decoder_layer{i}": [heads, target_len, source_len] numpy}}, the
        encoder-decoder attention of every decoder layer.
        """
        source, max_lengths = self.encode(tf.constant([sentence]))
        tokens, _ = self.search(source, max_lengths)
        tokens = tokens[0].numpy().tolist()
        if EOS_ID in tokens:
            tokens = tokens[: tokens.index(EOS_ID) + 1]
        decoder_input = tf.constant([[BOS_ID] + tokens[:-1]], tf.int32)
        _, weights = self.model(source, decoder_input, training=False)
        return {
            "source_tokens": self.source_tokenizer.pieces(source[0]),
            "target_tokens": self.target_tokenizer.pieces(tf.constant(tokens, tf.int32)),
            "attention": {name[: -len("_block2")]: value[0].numpy()
                          for name, value in weights.items() if name.endswith("_block2")},
        }
