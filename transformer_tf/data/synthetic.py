"""The embedded corpus: synthetic English -> German sentence pairs from a small
synchronous grammar, for demonstrations and tests. It is NOT natural data.

Both sides are built from the same choices, so every English sentence has exactly one
German translation. German agreement is real: articles and adjective endings follow the
noun's gender and case (nominative subject, accusative object, dative after the
prepositions used here), verbs have present and simple-past third-person forms, a
sentence-initial time adverb moves the German verb before its subject (verb second), and
"in dem" / "an dem" contract to "im" / "am".

    >>> pairs = generate_pairs(3, seed=0)
    >>> pairs[0]
    ('The cat sat on the mat.', 'Die Katze saß auf der Matte.')
"""

import random

CANONICAL = ("The cat sat on the mat.", "Die Katze saß auf der Matte.")

# (English, German, gender): gender m / f / n.
ANIMATE_NOUNS = [
    ("cat", "Katze", "f"),
    ("dog", "Hund", "m"),
    ("man", "Mann", "m"),
    ("woman", "Frau", "f"),
    ("child", "Kind", "n"),
    ("girl", "Mädchen", "n"),
    ("bird", "Vogel", "m"),
    ("horse", "Pferd", "n"),
    ("mouse", "Maus", "f"),
    ("teacher", "Lehrer", "m"),
    ("doctor", "Arzt", "m"),
    ("cook", "Koch", "m"),
    ("king", "König", "m"),
    ("queen", "Königin", "f"),
    ("baker", "Bäcker", "m"),
    ("fox", "Fuchs", "m"),
    ("cow", "Kuh", "f"),
    ("pig", "Schwein", "n"),
    ("sheep", "Schaf", "n"),
    ("rabbit", "Kaninchen", "n"),
    ("duck", "Ente", "f"),
    ("grandmother", "Großmutter", "f"),
    ("grandfather", "Großvater", "m"),
    ("friend", "Freund", "m"),
    ("sister", "Schwester", "f"),
    ("brother", "Bruder", "m"),
    ("baby", "Baby", "n"),
    ("musician", "Musiker", "m"),
    ("painter", "Maler", "m"),
    ("nurse", "Krankenschwester", "f"),
]
THING_NOUNS = [
    ("mat", "Matte", "f"),
    ("table", "Tisch", "m"),
    ("chair", "Stuhl", "m"),
    ("bed", "Bett", "n"),
    ("house", "Haus", "n"),
    ("garden", "Garten", "m"),
    ("tree", "Baum", "m"),
    ("car", "Auto", "n"),
    ("box", "Kiste", "f"),
    ("bridge", "Brücke", "f"),
    ("street", "Straße", "f"),
    ("river", "Fluss", "m"),
    ("window", "Fenster", "n"),
    ("door", "Tür", "f"),
    ("wall", "Wand", "f"),
    ("roof", "Dach", "n"),
    ("sofa", "Sofa", "n"),
    ("kitchen", "Küche", "f"),
    ("park", "Park", "m"),
    ("lake", "See", "m"),
    ("hill", "Hügel", "m"),
    ("boat", "Boot", "n"),
    ("train", "Zug", "m"),
    ("station", "Bahnhof", "m"),
    ("school", "Schule", "f"),
    ("church", "Kirche", "f"),
    ("forest", "Wald", "m"),
    ("field", "Feld", "n"),
    ("ball", "Ball", "m"),
    ("book", "Buch", "n"),
    ("apple", "Apfel", "m"),
    ("cake", "Kuchen", "m"),
    ("letter", "Brief", "m"),
    ("cup", "Tasse", "f"),
    ("bottle", "Flasche", "f"),
    ("hat", "Hut", "m"),
    ("bag", "Tasche", "f"),
    ("key", "Schlüssel", "m"),
    ("lamp", "Lampe", "f"),
    ("picture", "Bild", "n"),
    ("flower", "Blume", "f"),
    ("bread", "Brot", "n"),
    ("newspaper", "Zeitung", "f"),
    ("bicycle", "Fahrrad", "n"),
    ("clock", "Uhr", "f"),
    ("shoe", "Schuh", "m"),
    ("stone", "Stein", "m"),
    ("glass", "Glas", "n"),
]
# (English, German stem)
ADJECTIVES = [
    ("big", "groß"),
    ("small", "klein"),
    ("old", "alt"),
    ("young", "jung"),
    ("red", "rot"),
    ("black", "schwarz"),
    ("white", "weiß"),
    ("green", "grün"),
    ("blue", "blau"),
    ("happy", "glücklich"),
    ("tired", "müde"),
    ("brown", "braun"),
    ("yellow", "gelb"),
    ("beautiful", "schön"),
    ("new", "neu"),
    ("quiet", "ruhig"),
    ("hungry", "hungrig"),
    ("clever", "klug"),
    ("lazy", "faul"),
    ("fast", "schnell"),
    ("heavy", "schwer"),
    ("cold", "kalt"),
    ("warm", "warm"),
    ("strange", "seltsam"),
    ("friendly", "freundlich"),
]
# (English present, English past, German present, German past), third person singular.
INTRANSITIVE_VERBS = [
    ("sits", "sat", "sitzt", "saß"),
    ("sleeps", "slept", "schläft", "schlief"),
    ("stands", "stood", "steht", "stand"),
    ("lies", "lay", "liegt", "lag"),
    ("waits", "waited", "wartet", "wartete"),
    ("plays", "played", "spielt", "spielte"),
    ("sings", "sang", "singt", "sang"),
    ("works", "worked", "arbeitet", "arbeitete"),
    ("laughs", "laughed", "lacht", "lachte"),
    ("dances", "danced", "tanzt", "tanzte"),
    ("dreams", "dreamed", "träumt", "träumte"),
    ("eats", "ate", "isst", "aß"),
]
TRANSITIVE_VERBS = [
    ("sees", "saw", "sieht", "sah"),
    ("finds", "found", "findet", "fand"),
    ("holds", "held", "hält", "hielt"),
    ("carries", "carried", "trägt", "trug"),
    ("buys", "bought", "kauft", "kaufte"),
    ("watches", "watched", "beobachtet", "beobachtete"),
    ("likes", "liked", "mag", "mochte"),
    ("paints", "painted", "malt", "malte"),
    ("needs", "needed", "braucht", "brauchte"),
    ("has", "had", "hat", "hatte"),
    ("hears", "heard", "hört", "hörte"),
    ("visits", "visited", "besucht", "besuchte"),
    ("washes", "washed", "wäscht", "wusch"),
    ("opens", "opened", "öffnet", "öffnete"),
    ("reads", "read", "liest", "las"),
    ("takes", "took", "nimmt", "nahm"),
]
# (English, German), all taking the dative here (location, not direction).
PREPOSITIONS = [
    ("on", "auf"),
    ("under", "unter"),
    ("next to", "neben"),
    ("behind", "hinter"),
    ("in front of", "vor"),
    ("in", "in"),
    ("with", "mit"),
    ("at", "an"),
]
CONTRACTIONS = {("in", "dem"): "im", ("an", "dem"): "am"}
# (English, German, tense the adverb goes with: "present", "past" or None for either)
TIME_ADVERBS = [
    ("yesterday", "gestern", "past"),
    ("today", "heute", "present"),
    ("every day", "jeden Tag", "present"),
    ("in the morning", "am Morgen", None),
    ("in the evening", "am Abend", None),
    ("at night", "in der Nacht", None),
]

DEFINITE = {
    "nom": {"m": "der", "f": "die", "n": "das"},
    "acc": {"m": "den", "f": "die", "n": "das"},
    "dat": {"m": "dem", "f": "der", "n": "dem"},
}
INDEFINITE = {
    "nom": {"m": "ein", "f": "eine", "n": "ein"},
    "acc": {"m": "einen", "f": "eine", "n": "ein"},
    "dat": {"m": "einem", "f": "einer", "n": "einem"},
}
# Adjective endings after the definite (weak) and indefinite (mixed) article.
WEAK_ENDINGS = {
    "nom": {"m": "e", "f": "e", "n": "e"},
    "acc": {"m": "en", "f": "e", "n": "e"},
    "dat": {"m": "en", "f": "en", "n": "en"},
}
MIXED_ENDINGS = {
    "nom": {"m": "er", "f": "e", "n": "es"},
    "acc": {"m": "en", "f": "e", "n": "es"},
    "dat": {"m": "en", "f": "en", "n": "en"},
}


def _noun_phrase(rng, nouns, case):
    """Returns (English words, German article, German rest) of a noun phrase in `case`."""
    en_noun, de_noun, gender = rng.choice(nouns)
    definite = rng.random() < 0.7
    adjective = rng.choice(ADJECTIVES) if rng.random() < 0.4 else None
    en_words = [en_noun] if adjective is None else [adjective[0], en_noun]
    if definite:
        en_article = "the"
    else:
        en_article = "an" if en_words[0][0] in "aeiou" else "a"
    de_article = (DEFINITE if definite else INDEFINITE)[case][gender]
    de_rest = de_noun
    if adjective is not None:
        ending = (WEAK_ENDINGS if definite else MIXED_ENDINGS)[case][gender]
        de_rest = f"{adjective[1]}{ending} {de_noun}"
    return f"{en_article} {' '.join(en_words)}", de_article, de_rest


def _prepositional_phrase(rng):
    en_prep, de_prep = rng.choice(PREPOSITIONS)
    en_np, de_article, de_rest = _noun_phrase(rng, THING_NOUNS + ANIMATE_NOUNS[:8], "dat")
    contracted = CONTRACTIONS.get((de_prep, de_article))
    de = f"{contracted} {de_rest}" if contracted else f"{de_prep} {de_article} {de_rest}"
    return f"{en_prep} {en_np}", de


def _capitalize(sentence):
    return sentence[0].upper() + sentence[1:]


def random_pair(rng):
    """One (English, German) sentence pair drawn from the grammar."""
    tense = "past" if rng.random() < 0.5 else "present"
    transitive = rng.random() < 0.5
    en_pres, en_past, de_pres, de_past = rng.choice(
        TRANSITIVE_VERBS if transitive else INTRANSITIVE_VERBS
    )
    en_verb, de_verb = (en_past, de_past) if tense == "past" else (en_pres, de_pres)
    en_subject, de_article, de_rest = _noun_phrase(rng, ANIMATE_NOUNS, "nom")
    de_subject = f"{de_article} {de_rest}"
    en_tail, de_tail = [], []
    if transitive:
        en_object, obj_article, obj_rest = _noun_phrase(rng, THING_NOUNS + ANIMATE_NOUNS, "acc")
        en_tail.append(en_object)
        de_tail.append(f"{obj_article} {obj_rest}")
    if rng.random() < (0.4 if transitive else 0.7):
        en_pp, de_pp = _prepositional_phrase(rng)
        en_tail.append(en_pp)
        de_tail.append(de_pp)
    adverbs = [a for a in TIME_ADVERBS if a[2] in (None, tense)]
    if rng.random() < 0.25:
        en_time, de_time, _ = rng.choice(adverbs)
        # German is verb-second: the time adverb takes the first slot, the subject follows.
        en = " ".join([f"{en_time},", en_subject, en_verb, *en_tail])
        de = " ".join([de_time, de_verb, de_subject, *de_tail])
    elif rng.random() < 0.15:
        # "often" stands before the English verb and after the German one.
        en = " ".join([en_subject, "often", en_verb, *en_tail])
        de = " ".join([de_subject, de_verb, "oft", *de_tail])
    else:
        en = " ".join([en_subject, en_verb, *en_tail])
        de = " ".join([de_subject, de_verb, *de_tail])
    return _capitalize(en) + ".", _capitalize(de) + "."


def generate_pairs(count, seed=1234):
    """`count` distinct sentence pairs, the canonical example first, deterministic in `seed`."""
    rng = random.Random(seed)
    pairs, seen = [CANONICAL], {CANONICAL[0]}
    while len(pairs) < count:
        pair = random_pair(rng)
        if pair[0] not in seen:
            seen.add(pair[0])
            pairs.append(pair)
    return pairs[:count]


def generate_splits(train_size, validation_size, test_size, seed=1234):
    """Train / validation / test splits with no sentence in two splits.

    The canonical "The cat sat on the mat." is the first test sentence, so a model is
    never trained on it. Returns {split: (sources, targets)}.
    """
    pairs = generate_pairs(test_size + validation_size + train_size, seed)
    bounds = {
        "test": (0, test_size),
        "validation": (test_size, test_size + validation_size),
        "train": (test_size + validation_size, len(pairs)),
    }
    return {
        split: tuple(list(side) for side in zip(*pairs[start:end]))
        for split, (start, end) in bounds.items()
    }
