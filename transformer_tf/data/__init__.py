"""Sentence-pair sources, tokenizers and tf.data pipelines."""
