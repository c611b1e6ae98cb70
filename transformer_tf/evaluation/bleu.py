"""Corpus BLEU and chrF through sacrebleu, with their signatures."""

import sacrebleu


def corpus_scores(hypotheses, references, tokenize="13a", lowercase=False):
    """Score detokenized hypotheses against one reference each.

    Returns {"bleu", "bleu_signature", "chrf", "chrf_signature"}.
    """
    bleu = sacrebleu.metrics.BLEU(tokenize=tokenize, lowercase=lowercase)
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": bleu_score.score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf": chrf_score.score,
        "chrf_signature": str(chrf.get_signature()),
    }
