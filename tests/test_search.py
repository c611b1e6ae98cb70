"""Searches on a trained tiny model: the cache changes nothing, beam search returns what the
model scores as it says (and better than greedy), and a sentence's output does not depend on
its batch."""

import numpy as np
import pytest
import tensorflow as tf

from transformer_tf.data.sources import load_splits
from transformer_tf.inference import search
from transformer_tf.run_dir import RunDir
from transformer_tf.runner import Runner

greedy_search = tf.function(search.greedy_search)

beam_search = tf.function(search.beam_search)


@pytest.fixture(scope="module")
def translator(trained_run):
    return Runner.from_run_dir(trained_run).translator()


@pytest.fixture(scope="module")
def batch(trained_run, translator):
    sources = load_splits(RunDir(trained_run).read_config().data)["test"].sources
    return translator.encode(tf.constant(sources[:24]))


def _ended(tokens):
    """Token lists cut after EOS (id 3)."""
    rows = []
    for row in np.asarray(tokens).tolist():
        rows.append(row[: row.index(3) + 1] if 3 in row else row)
    return rows


def test_cached_greedy_equals_recomputing_the_decoder(translator, batch):
    cached, cached_scores = greedy_search(translator.model, *batch, cache=True)
    full, full_scores = greedy_search(translator.model, *batch, cache=False)
    assert _ended(cached) == _ended(full)
    np.testing.assert_allclose(cached_scores, full_scores, atol=1e-4)


def test_beam_of_one_is_greedy(translator, batch):
    greedy, greedy_scores = greedy_search(translator.model, *batch)
    beam, beam_scores = beam_search(translator.model, *batch, beam_size=1, alpha=0.0)
    assert _ended(beam[:, 0]) == _ended(greedy)
    np.testing.assert_allclose(beam_scores[:, 0], greedy_scores, atol=1e-4)


def test_beam_search_returns_distinct_n_best_with_the_models_scores(translator, batch):
    _, greedy_scores = greedy_search(translator.model, *batch)
    tokens, scores = beam_search(translator.model, *batch, beam_size=4, alpha=0.0, n_best=4)
    assert tokens.shape[:2] == (24, 4)
    scores, greedy_scores = scores.numpy(), greedy_scores.numpy()
    assert np.all(np.diff(scores, axis=1) <= 1e-5)  # n-best sorted, best first
    assert np.mean(scores[:, 0]) > np.mean(greedy_scores)  # the search finds better ones
    for source, hypotheses, hypothesis_scores in zip(batch[0], tokens.numpy(), scores):
        ended = _ended(hypotheses)
        assert len({tuple(h) for h in ended}) == len(ended)  # different hypotheses
        sources = tf.repeat(source[tf.newaxis], len(ended), axis=0)
        width = max(len(h) for h in ended)
        targets = tf.constant([h + [0] * (width - len(h)) for h in ended])
        rescored = search.sequence_scores(translator.model, sources, targets).numpy()
        np.testing.assert_allclose(rescored, hypothesis_scores, atol=1e-3)


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_padding_in_the_batch_does_not_change_an_output(translator, batch, search):
    source, max_lengths = batch

    def decode(s, m):
        if search == "greedy":
            return greedy_search(translator.model, s, m)[0]
        return beam_search(translator.model, s, m, beam_size=3, alpha=0.6)[0][:, 0]

    together = _ended(decode(source[:8], max_lengths[:8]))
    for i in range(8):
        alone = source[i : i + 1]
        alone = alone[:, : int(tf.reduce_sum(tf.cast(alone > 0, tf.int32)))]  # no padding
        assert _ended(decode(alone, max_lengths[i : i + 1])) == [together[i]]


def test_sampling_is_reproducible_and_top1_is_greedy(translator, batch):
    greedy, _ = greedy_search(translator.model, *batch)
    top1, _ = greedy_search(translator.model, *batch, sampling_topk=1)
    assert _ended(top1) == _ended(greedy)
    seed = tf.constant([7, 7])
    first, _ = greedy_search(translator.model, *batch, sampling_topk=-1, seed=seed)
    again, _ = greedy_search(translator.model, *batch, sampling_topk=-1, seed=seed)
    assert _ended(first) == _ended(again)
    assert _ended(first) != _ended(greedy)


def test_outputs_respect_the_length_budget(translator, batch):
    source, max_lengths = batch
    tokens, _ = beam_search(translator.model, source, tf.minimum(max_lengths, 3), beam_size=2)
    for row in _ended(tokens[:, 0]):
        assert len(row) <= 3 and row[-1] == 3


def test_cached_greedy_equals_recomputing_the_decoder_with_tied_pre_norm(trained_tied_run):
    # The cached step is written apart from the full decoder: the pre-norm order and the
    # stack's final layer norm must match there too.
    config = RunDir(trained_tied_run).read_config()
    translator = Runner(config).translator()
    sources = load_splits(config.data)["test"].sources
    batch = translator.encode(tf.constant(sources[:24]))
    cached, cached_scores = greedy_search(translator.model, *batch, cache=True)
    full, full_scores = greedy_search(translator.model, *batch, cache=False)
    assert _ended(cached) == _ended(full)
    np.testing.assert_allclose(cached_scores, full_scores, atol=1e-4)


def test_a_copying_model_decodes_with_the_scores_of_its_forward_pass(trained_fields_run):
    # The cached step mixes in the copy distribution apart from the model's call: its
    # attention rows, source rows and beam rows must be the call's.
    config = RunDir(trained_fields_run).read_config()
    translator = Runner(config).translator()
    model = translator.model
    assert model.copy_attention
    sources = load_splits(config.data)["test"].sources
    batch = translator.encode(tf.constant(sources[:12]))
    cached, cached_scores = greedy_search(model, *batch, cache=True)
    full, full_scores = greedy_search(model, *batch, cache=False)
    assert _ended(cached) == _ended(full)
    np.testing.assert_allclose(cached_scores, full_scores, atol=1e-4)
    tokens, scores = beam_search(model, *batch, beam_size=3, alpha=0.0, n_best=3)
    for rank in range(3):
        rescored = search.sequence_scores(model, batch[0], tokens[:, rank])
        np.testing.assert_allclose(scores[:, rank], rescored, atol=1e-3)


def test_block_repeated_ngrams_blocks_the_ids_that_would_repeat_an_ngram():
    # Rows: BOS 5 6 7 5 6 and BOS 5 6 7 8 5 (BOS is 1); 10 ids.
    sequences = tf.constant([[1, 5, 6, 7, 5, 6], [1, 5, 6, 7, 8, 5]])
    scores = tf.zeros([2, 10])

    def blocked(n):
        out = search.block_repeated_ngrams(scores, sequences, n).numpy()
        return [sorted(np.flatnonzero(row < -1).tolist()) for row in out]

    assert blocked(1) == [[1, 5, 6, 7], [1, 5, 6, 7, 8]]  # every id seen
    assert blocked(2) == [[7], [6]]  # 6 was followed by 7; 5 by 6
    assert blocked(3) == [[7], []]  # "5 6" was followed by 7; "8 5" is new
    assert blocked(7) == [[], []]  # longer than the outputs: nothing to repeat


def _repeats(row, n):
    ngrams = [tuple(row[i : i + n]) for i in range(len(row) - n + 1)]
    return len(ngrams) != len(set(ngrams))


@pytest.mark.parametrize("beam", [1, 3])
def test_no_output_repeats_an_ngram_when_told_and_scores_stay_the_models(translator, batch, beam):
    source, max_lengths = batch
    long_budgets = tf.fill(tf.shape(max_lengths), 40)  # room to loop

    def decode(n):
        if beam == 1:
            tokens, scores = greedy_search(translator.model, source, long_budgets, **n)
        else:
            tokens, scores = beam_search(translator.model, source, long_budgets, beam, 3.0, **n)
            tokens, scores = tokens[:, 0], scores[:, 0]
        return tokens, scores

    free, _ = decode({})
    assert any(_repeats(row, 2) for row in _ended(free))  # the constraint has work to do
    tokens, scores = decode({"no_repeat_ngram_size": 2})
    assert not any(_repeats(row, 2) for row in _ended(tokens))
    np.testing.assert_allclose(
        scores, search.sequence_scores(translator.model, source, tokens), atol=1e-3
    )


def test_translate_prints_the_n_best(trained_run, capsys):
    from transformer_tf.cli import main

    sentences = ["The cat sat on the mat.", "A dog sleeps."]
    # Ranked by the summed log-probability alone (no length penalty), so scores descend.
    assert (
        main(
            [
                "translate",
                "--run-dir",
                str(trained_run),
                "--set",
                "eval.length_penalty=0",
                "--n-best",
                "3",
                *sentences,
            ]
        )
        == 0
    )
    lines = [line.split(" ||| ") for line in capsys.readouterr().out.splitlines()]
    assert [int(index) for index, _, _ in lines] == [0, 0, 0, 1, 1, 1]
    for first in (0, 3):
        scores = [float(score) for _, _, score in lines[first : first + 3]]
        assert scores == sorted(scores, reverse=True) and scores[0] < 0
    # No assertion on the texts: with nothing favouring length, a 150-step model may rightly
    # rank the empty translation among its three best (it did on one CI machine).
