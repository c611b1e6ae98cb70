"""Sentence selection (`data/selection.py`): ranking, ties, order, short texts, batches."""

import pytest

from transformer_tf.data.selection import select_sentences

STORY = (
    "Once a king had three daughters. The youngest was kind.\n\n"
    "One day the KING fell ill!  A bird sang at the window. Who would help the king? "
    "The youngest daughter went to find the bird"
)


def _select(texts, queries, keep):
    return [text.decode("utf-8") for text in select_sentences(texts, queries, keep).numpy()]


@pytest.mark.parametrize(
    "question, keep, expected",
    [
        # "king" and "the" (any case) in four sentences; the first three of those win
        (
            "Which king, the one who fell ill?",
            1,
            "One day the KING fell ill!",
        ),
        # two kept, in the story's order; ties go to the earlier sentence
        (
            "Who went to find the bird?",
            2,
            "A bird sang at the window. The youngest daughter went to find the bird",
        ),
        ("No words in common?", 1, "Once a king had three daughters."),
        ("Anything", 9, " ".join(" ".join(STORY.split()).split(" "))),
    ],
)
def test_the_sentences_sharing_most_words_are_kept_in_their_order(question, keep, expected):
    assert _select([STORY], [question], keep) == [expected]


def test_distinct_words_count_once_and_batches_of_mixed_lengths_are_independent():
    texts = ["Red red red. Blue green.", "One.", "", "Alpha beta. Gamma."]
    queries = ["red blue green", "one", "anything", "gamma"]
    # "Red red red." shares one distinct word, "Blue green." two
    assert _select(texts, queries, 1) == ["Blue green.", "One.", "", "Gamma."]
    assert _select(texts[:0], queries[:0], 2) == []
