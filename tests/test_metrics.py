"""The package's BLEU and chrF are sacrebleu's, its ROUGE is rouge-score's; several
references per example are scored as those libraries score them."""

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from transformer_tf.evaluation.metrics import corpus_scores, format_scores

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
    assert "rouge1" not in lowered  # only the metrics asked for
    assert cased["bleu"] < lowered["bleu"]
    assert (
        lowered["bleu"]
        == sacrebleu.corpus_bleu(upper, [REFERENCES], tokenize="none", lowercase=True).score
    )
    assert "case:lc" in lowered["bleu_signature"] and "tok:none" in lowered["bleu_signature"]


SUMMARIES = ["Person1 offers Person2 some tea.", "They are going to the cinema tonight."]
SUMMARY_REFERENCES = [
    ["#Person1# offers #Person2# tea.", "Person1 asks if Person2 wants tea.", "Tea is offered."],
    ["They'll watch a film tonight.", "#Person1# and #Person2# go to the cinema."],
]


def test_rouge_is_rouge_scores_best_and_mean_over_references():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = corpus_scores(SUMMARIES, SUMMARY_REFERENCES, metrics=["rouge"])
    assert set(scores) == {
        "rouge1",
        "rouge2",
        "rouge_l",
        "rouge1_mean",
        "rouge2_mean",
        "rouge_l_mean",
        "rouge_signature",
    }
    for ours, theirs in (("rouge1", "rouge1"), ("rouge2", "rouge2"), ("rouge_l", "rougeL")):
        best = [
            scorer.score_multi(refs, h)[theirs].fmeasure
            for h, refs in zip(SUMMARIES, SUMMARY_REFERENCES)
        ]
        mean = [
            sum(scorer.score(r, h)[theirs].fmeasure for r in refs) / len(refs)
            for h, refs in zip(SUMMARIES, SUMMARY_REFERENCES)
        ]
        assert scores[ours] == pytest.approx(100 * sum(best) / 2, abs=1e-9)
        assert scores[f"{ours}_mean"] == pytest.approx(100 * sum(mean) / 2, abs=1e-9)
        assert scores[ours] > scores[f"{ours}_mean"] > 0
    assert scores["rouge_signature"].startswith("nrefs:2-3|multi:max|stem:porter|f1|rouge-score:")
    assert format_scores(scores).startswith("ROUGE-1/2/L ")


def test_bleu_and_chrf_with_a_varying_number_of_references():
    scores = corpus_scores(SUMMARIES, SUMMARY_REFERENCES)
    streams = [
        [refs[i] if i < len(refs) else None for refs in SUMMARY_REFERENCES] for i in range(3)
    ]
    assert scores["bleu"] == sacrebleu.metrics.BLEU().corpus_score(SUMMARIES, streams).score
    assert scores["chrf"] == sacrebleu.metrics.CHRF().corpus_score(SUMMARIES, streams).score
    one = corpus_scores(SUMMARIES, [refs[:1] for refs in SUMMARY_REFERENCES])
    assert scores["bleu"] > one["bleu"]  # more references match more n-grams
