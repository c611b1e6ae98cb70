"""Corpus-level scores through sacrebleu."""
