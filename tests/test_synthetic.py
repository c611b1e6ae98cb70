"""The embedded corpus: deterministic, contains the user's example, disjoint splits."""

from transformer_tf.data.synthetic import CANONICAL, generate_pairs, generate_splits


def test_contains_the_cat_example_and_is_deterministic():
    assert ("The cat sat on the mat.", "Die Katze saß auf der Matte.") in generate_pairs(100)
    assert generate_pairs(500, seed=7) == generate_pairs(500, seed=7)
    assert generate_pairs(500, seed=7) != generate_pairs(500, seed=8)


def test_splits_share_no_sentence():
    splits = generate_splits(3000, 300, 300, seed=3)
    assert [len(splits[s][0]) for s in ("train", "validation", "test")] == [3000, 300, 300]
    sets = {name: set(sources) for name, (sources, _) in splits.items()}
    assert not sets["train"] & sets["validation"]
    assert not sets["train"] & sets["test"]
    assert not sets["validation"] & sets["test"]
    assert splits["test"][0][0] == CANONICAL[0]


def test_german_agreement():
    pairs = generate_pairs(20000, seed=1)

    def check(english, german):
        found = [de for en, de in pairs if english in en]
        assert found and all(german in de for de in found), (english, found[:3])

    check(" sees the dog", " den Hund")  # accusative masculine
    check("A big dog ", "Ein großer Hund ")  # nominative masculine, mixed declension
    check(" with a big ", " großen ")  # dative, mixed declension: always -en
    check(" in the garden.", " im Garten.")  # dative, contracted
    check(" on the mat.", " auf der Matte.")  # dative feminine
    check("Yesterday, the cat ", "Gestern ")  # verb second after a time adverb
