"""The package's BLEU and chrF are sacrebleu's, with its signatures."""

import sacrebleu

from transformer_tf.evaluation.bleu import corpus_scores

HYPOTHESES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest."]
REFERENCES = [
    "Ein Mann fährt ein Fahrrad.",
    "Zwei Hunde spielen im Schnee.",
    "Eine Frau liest ein Buch.",
]


def test_scores_and_signatures_are_sacrebleus():
    scores = corpus_scores(HYPOTHESES, REFERENCES)
    assert scores["bleu"] == sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score
    assert scores["chrf"] == sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score
    assert scores["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert scores["chrf_signature"].startswith("nrefs:1|case:mixed")


def test_lowercased_tokenized_bleu_as_papers_report_it():
    upper = [h.upper() for h in HYPOTHESES]
    cased = corpus_scores(upper, REFERENCES)
    lowered = corpus_scores(upper, REFERENCES, tokenize="none", lowercase=True)
    assert cased["bleu"] < lowered["bleu"]
    assert (
        lowered["bleu"]
        == sacrebleu.corpus_bleu(upper, [REFERENCES], tokenize="none", lowercase=True).score
    )
    assert "case:lc" in lowered["bleu_signature"] and "tok:none" in lowered["bleu_signature"]
