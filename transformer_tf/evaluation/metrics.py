"""Corpus scores of generated texts against one or more references each.

BLEU and chrF come from sacrebleu (with their signatures), ROUGE-1/2/L F1 from Google's
`rouge-score` package (its tokenizer, Porter stemming on). Where an example has several
references, sacrebleu counts n-grams against all of them at once; ROUGE is scored against
each reference and reported twice: the best over them (`rouge1`, `rouge2`, `rouge_l`, as
`rouge_score.RougeScorer.score_multi` and most papers do) and the mean over them
(`rouge1_mean`, ...).
"""

import sacrebleu

ROUGE_TYPES = {"rouge1": "rouge1", "rouge2": "rouge2", "rouge_l": "rougeL"}  # ours: theirs


def corpus_scores(
    hypotheses, references, metrics=("bleu", "chrf"), tokenize="13a", lowercase=False
):
    """Score `hypotheses` (strings) against `references`: a list of strings (one reference
    each) or of lists of strings (any number of references each, at least one).

    `metrics` lists what to compute: "bleu" (`tokenize`, `lowercase` are its settings),
    "chrf", "rouge". Returns a dict: bleu, bleu_signature, chrf, chrf_signature, rouge1,
    rouge2, rouge_l, rouge1_mean, rouge2_mean, rouge_l_mean, rouge_signature; each score
    on a 0-100 scale.
    """
    references = [[r] if isinstance(r, str) else list(r) for r in references]
    scores = {}
    if "bleu" in metrics or "chrf" in metrics:
        streams = _reference_streams(references)
        for name, metric in (
            ("bleu", sacrebleu.metrics.BLEU(tokenize=tokenize, lowercase=lowercase)),
            ("chrf", sacrebleu.metrics.CHRF()),
        ):
            if name in metrics:
                scores[name] = metric.corpus_score(hypotheses, streams).score
                scores[f"{name}_signature"] = str(metric.get_signature())
    if "rouge" in metrics:
        scores.update(rouge_scores(hypotheses, references))
    return scores


def _reference_streams(references):
    """sacrebleu's layout: one stream per reference position, None where an example has
    fewer references than the most any has."""
    most = max(len(refs) for refs in references)
    return [[refs[i] if i < len(refs) else None for refs in references] for i in range(most)]


def rouge_scores(hypotheses, references):
    """ROUGE-1/2/L F1 (0-100) of each hypothesis against its references (lists of strings),
    the best and the mean over references, averaged over the examples."""
    from importlib.metadata import version

    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES.values()), use_stemmer=True)
    totals = {f"{name}{kind}": 0.0 for name in ROUGE_TYPES for kind in ("", "_mean")}
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        per_reference = [scorer.score(reference, hypothesis) for reference in refs]
        for name, theirs in ROUGE_TYPES.items():
            f1 = [score[theirs].fmeasure for score in per_reference]
            totals[name] += max(f1)
            totals[f"{name}_mean"] += sum(f1) / len(f1)
    count = max(len(hypotheses), 1)
    scores = {key: 100.0 * total / count for key, total in totals.items()}
    scores["rouge_signature"] = (
        f"nrefs:{_nrefs(references)}|multi:max|stem:porter|f1|rouge-score:{version('rouge-score')}"
    )
    return scores


def _nrefs(references):
    counts = {len(refs) for refs in references}
    return str(counts.pop()) if len(counts) == 1 else f"{min(counts)}-{max(counts)}"


def format_scores(scores):
    """The headline scores of `corpus_scores`, in one line: `BLEU 34.10  chrF 60.20  ROUGE-1/2/L
    41.0/17.2/38.9` (the ROUGE of the best reference)."""
    parts = [
        f"{label} {scores[key]:.2f}"
        for key, label in (("bleu", "BLEU"), ("chrf", "chrF"))
        if key in scores
    ]
    if "rouge1" in scores:
        parts.append("ROUGE-1/2/L " + "/".join(f"{scores[key]:.2f}" for key in ROUGE_TYPES))
    return "  ".join(parts)
