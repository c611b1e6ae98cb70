"""Decoding: greedy, sampling and beam search, batched, the whole loop in the graph
(`tf.while_loop`), with a per-layer key/value cache.

Every search calls a *step function* `step(output, position, cache) -> (logits, cache)`:
`output` [batch, position + 1] holds the ids so far (BOS first). The cached step feeds only
the newest id and appends its keys and values to each decoder layer's cache (encoder keys
and values are computed once per sentence and kept once per sentence, however many
hypotheses beam search follows); the full step re-runs the whole decoder, which
is slower and exists to check the cache against.

Every output stops at EOS or at its sentence's length budget, where EOS is forced, so no
output is longer than its budget and every search ends the same way.
"""

from typing import NamedTuple

import tensorflow as tf

from transformer_tf.data.tokenizers import BOS_ID, EOS_ID, PAD_ID
from transformer_tf.model.masks import (
    MASK_NEGATIVE,
    create_look_ahead_mask,
    create_masks,
    create_padding_mask,
)


def max_output_lengths(source, ratio, offset, limit):
    """Per-sentence decoding budget: ratio * source tokens + offset, at most `limit`.

    [batch, src_len] -> [batch] int32.
    """
    source_lengths = tf.reduce_sum(tf.cast(tf.not_equal(source, PAD_ID), tf.float32), axis=1)
    lengths = tf.cast(tf.math.ceil(ratio * source_lengths), tf.int32) + offset
    return tf.minimum(lengths, limit)


def run_encoder(model, source):
    """Encoder output and padding mask of a source batch."""
    padding_mask = create_padding_mask(source)
    enc_output, _ = model.encoder(source, training=False, padding_mask=padding_mask)
    return enc_output, padding_mask


def cached_step(model, source, enc_output, padding_mask, beam_size=1):
    """(initial state, step function) feeding one new id per step. The state holds each
    decoder layer's cache (see `DecoderLayer.init_cache`: a row per hypothesis,
    `beam_size` per sentence, for the decoder's keys and values, a row per sentence for the
    encoder's) and, a row per sentence, the source padding mask and the source ids (which
    `model.output_logits` copies from)."""

    def step(output, position, state):
        layers, (mask, source) = state
        x, layers, weights = model.decoder.step(output[:, -1], position, layers, mask, beam_size)
        # Only a copying model reads the source ids: no per-step repeat for the others.
        copies = model.copy_attention and beam_size > 1
        inp = tf.repeat(source, beam_size, axis=0) if copies else source
        logits = model.output_logits(x, weights, inp)  # [batch, vocab]
        return logits, (layers, (mask, source))

    return (model.decoder.init_cache(enc_output, beam_size), (padding_mask, source)), step


def full_step(model, source, enc_output, padding_mask):
    """(initial state, step function) re-running the decoder over all ids each step."""

    def step(output, position, state):
        memory, (mask, source) = state
        look_ahead_mask = create_look_ahead_mask(tf.shape(output)[1])
        dec_output, weights = model.decoder(
            output, memory, training=False, look_ahead_mask=look_ahead_mask, padding_mask=mask
        )
        return model.output_logits(dec_output, weights, source)[:, -1, :], state

    return (enc_output, (padding_mask, source)), step


class GreedyState(NamedTuple):
    """The variables of the greedy loop. `going` counts the sentences still decoding: a
    sentence that ends leaves every per-sentence field, its output written to the results."""

    position: tf.Tensor  # [] int32, the position whose token this step chooses
    output: tf.Tensor  # [going, position + 1] int32 ids so far, BOS first
    scores: tf.Tensor  # [going] float32 sums of the chosen tokens' log-probabilities
    budgets: tf.Tensor  # [going] int32 length budgets, EOS included
    rows: tf.Tensor  # [going] int32, each sentence's row in the batch
    cache: tuple  # the step function's state, one row per sentence going
    result_tokens: tf.Tensor  # [batch, width] int32 outputs of the sentences that ended
    result_scores: tf.Tensor  # [batch] float32


class BeamState(NamedTuple):
    """The variables of the beam search loop (k = beam size; `going` as in `GreedyState`)."""

    position: tf.Tensor  # [] int32
    alive: tf.Tensor  # [going, k, position + 1] int32 live hypotheses, BOS first
    alive_scores: tf.Tensor  # [going, k] float32 their sums of log-probabilities
    finished: tf.Tensor  # [going, k, width] int32 best k ended hypotheses, PAD after EOS
    finished_scores: tf.Tensor  # [going, k] float32 their sums of log-probabilities
    finished_norm: tf.Tensor  # [going, k] float32 the same over the length penalty, best first
    budgets: tf.Tensor  # [going] int32
    rows: tf.Tensor  # [going] int32
    cache: tuple  # decoder cache (see `cached_step`) and padding mask
    result_tokens: tf.Tensor  # [batch, n_best, width - 1] int32, without BOS
    result_scores: tf.Tensor  # [batch, n_best] float32


class Candidates(NamedTuple):
    """The 2k best one-token extensions of each sentence's k live hypotheses: enough for k
    to stay alive however many of them end."""

    sequences: tf.Tensor  # [going, 2k, position + 2] int32
    scores: tf.Tensor  # [going, 2k] float32 sums of log-probabilities
    origins: tf.Tensor  # [going, 2k] int32, the live hypothesis each extends
    ended: tf.Tensor  # [going, 2k] bool, the new token is EOS


# Fields of both states that are not one row per sentence going.
_WHOLE_FIELDS = ("position", "cache", "result_tokens", "result_scores")


def _per_sentence(state):
    return [name for name in state._fields if name not in _WHOLE_FIELDS]


def _shape_invariants(state, growing):
    """What the loop may change in each field's shape: the first axis of the per-sentence
    fields (sentences leave), the last axis of `growing` (one token per step) and any axis of
    the cache (it grows along its length axis too). The beam axis stays static."""

    def free(value, axes):
        dims = value.shape.as_list()
        for axis in axes:
            dims[axis] = None
        return tf.TensorShape(dims)

    shapes = {name: getattr(state, name).shape for name in _WHOLE_FIELDS if name != "cache"}
    shapes.update({name: free(getattr(state, name), [0]) for name in _per_sentence(state)})
    shapes[growing] = free(getattr(state, growing), [0, -1])
    shapes["cache"] = tf.nest.map_structure(lambda t: free(t, range(t.shape.rank)), state.cache)
    return type(state)(**shapes)


def _rows(structure, indices):
    """The rows `indices` of every tensor in `structure`."""
    return tf.nest.map_structure(lambda t: tf.gather(t, indices), structure)


def _pad_last(sequences, width):
    """`sequences` PAD-padded along the last axis to `width`."""
    padding = [[0, 0]] * (sequences.shape.rank - 1) + [[0, width - tf.shape(sequences)[-1]]]
    return tf.pad(sequences, padding)


def _greedy_cache_rows(cache, hypotheses, sentences):
    """The greedy searches' cache at the rows `sentences`: one row per sentence."""
    return _rows(cache, sentences)


def _retire(state, done, results, beam_size=1, cache_rows=_greedy_cache_rows):
    """The sentences `done` leave the search.

    `results()` (called only when some sentence is done) returns (tokens, scores), one row per
    sentence going; the rows of the sentences done are written into the state's results at
    their batch rows. The others keep their rows of every per-sentence field, and of the
    cache what `cache_rows(cache, hypotheses, sentences)` keeps: their `beam_size`
    hypotheses' rows, and their own rows of what is kept once per sentence. Nothing is
    copied on a step where none is done.
    """

    def retire():
        ended, kept = tf.where(done)[:, 0], tf.where(~done)[:, 0]
        at = tf.gather(state.rows, ended)[:, tf.newaxis]
        tokens, scores = results()
        kept_rows = tf.reshape(
            kept[:, tf.newaxis] * beam_size + tf.range(beam_size, dtype=kept.dtype), [-1]
        )
        return state._replace(
            result_tokens=tf.tensor_scatter_nd_update(
                state.result_tokens, at, tf.gather(tokens, ended)
            ),
            result_scores=tf.tensor_scatter_nd_update(
                state.result_scores, at, tf.gather(scores, ended)
            ),
            cache=cache_rows(state.cache, kept_rows, kept),
            **{name: tf.gather(getattr(state, name), kept) for name in _per_sentence(state)},
        )

    return tf.cond(tf.reduce_any(done), retire, lambda: state)


def _going(state):
    """Loop condition of the searches: some sentence has not ended."""
    return tf.size(state.rows) > 0


def _search(state, body, growing):
    """Run `body` from `state` until every sentence has ended; (result tokens, scores)."""
    (state,) = tf.while_loop(
        _going,
        lambda state: (body(state),),
        (state,),
        shape_invariants=(_shape_invariants(state, growing),),
    )
    return state.result_tokens, state.result_scores


def _force_eos_at_budget(log_probs, position, max_lengths):
    """log_probs [..., vocab]: where `position + 1` reaches the budget, only EOS remains,
    with its own log-probability (greedy search scores a forced EOS the same way)."""
    at_budget = (position + 1 >= max_lengths)[..., tf.newaxis]  # [..., 1]
    not_eos = tf.range(tf.shape(log_probs)[-1]) != EOS_ID
    return tf.where(at_budget & not_eos, MASK_NEGATIVE, log_probs)


def block_repeated_ngrams(scores, sequences, n):
    """`scores` [rows, vocab] with MASK_NEGATIVE at every id that would end an n-gram its
    row's `sequences` [rows, length] (the ids so far, BOS first) already holds: no n-gram
    twice in one output (fairseq's --no-repeat-ngram-size)."""
    # Padded on the left so that every row holds at least one n-gram (of PAD, which no
    # output repeats); for n = 1 `last` is empty and every id seen is blocked.
    padded = tf.pad(sequences, [[0, 0], [n - 1, 0]], constant_values=PAD_ID)
    ngrams = tf.signal.frame(padded, n, 1, axis=1)  # [rows, ngrams, n]
    last = padded[:, tf.shape(padded)[1] - (n - 1) :]  # [rows, n - 1]
    found = tf.where(tf.reduce_all(ngrams[:, :, :-1] == last[:, tf.newaxis], axis=2))
    blocked = tf.stack([found[:, 0], tf.cast(tf.gather_nd(ngrams[:, :, -1], found), tf.int64)], 1)
    hits = tf.scatter_nd(blocked, tf.ones(tf.shape(found)[:1]), tf.shape(scores, tf.int64))
    return tf.where(hits > 0, tf.cast(MASK_NEGATIVE, scores.dtype), scores)


def greedy_search(
    model,
    source,
    max_lengths,
    cache=True,
    sampling_topk=0,
    sampling_temperature=1.0,
    seed=None,
    no_repeat_ngram_size=0,
):
    """Greedy decoding (or sampling, with `sampling_topk` > 0).

    A sentence leaves the batch when it ends: its output is written out and the next steps
    compute only the sentences still going, so a batch costs what its outputs' lengths
    add up to, not its longest output times its size.

    Args:
        model: a `Transformer`.
        source: [batch, src_len] int32 source ids (EOS-terminated, 0-padded).
        max_lengths: [batch] int32, most tokens to generate per sentence (EOS included).
        cache: bool, decode incrementally (True) or recompute the decoder each step.
        sampling_topk: int, 0 for the most probable token; k > 0 samples among the k most
            probable; -1 samples from the whole distribution.
        sampling_temperature: float, divides the logits before sampling.
        seed: optional [2] int32 seed for reproducible sampling.
        no_repeat_ngram_size: int, n > 0: no output holds an n-gram twice
            (`block_repeated_ngrams`); 0: no constraint.

    Returns:
        tokens: [batch, max(max_lengths)] int32 without the leading BOS; PAD after EOS.
        scores: [batch] float32, sum of the log-probabilities of the chosen tokens.
    """
    batch = tf.shape(source)[0]
    width = tf.reduce_max(max_lengths)
    enc_output, padding_mask = run_encoder(model, source)
    make_step = cached_step if cache else full_step
    step_cache, step_fn = make_step(model, source, enc_output, padding_mask)
    seed = tf.constant([0, 0], tf.int32) if seed is None else seed

    def choose(logits, position):
        if sampling_topk:
            return _sample(logits, sampling_topk, sampling_temperature, seed + position)
        return tf.argmax(logits, axis=-1, output_type=tf.int32)

    def body(state):
        logits, step_cache = step_fn(state.output, state.position, state.cache)
        logits = tf.cast(logits, tf.float32)  # [going, vocab]
        allowed = logits
        if no_repeat_ngram_size:
            allowed = block_repeated_ngrams(logits, state.output, no_repeat_ngram_size)
        token = choose(allowed, state.position)  # [going]
        # At its budget a sentence ends (see _force_eos_at_budget; done on the chosen ids
        # here, which spares a pass over the vocabulary).
        token = tf.where(state.position + 1 >= state.budgets, EOS_ID, token)
        # log softmax of the chosen ids only: logit - logsumexp(logits).
        log_prob = tf.gather(logits, token, batch_dims=1) - tf.reduce_logsumexp(logits, axis=-1)
        state = state._replace(
            position=state.position + 1,
            output=tf.concat([state.output, token[:, tf.newaxis]], axis=1),
            scores=state.scores + log_prob,
            cache=step_cache,
        )
        return _retire(
            state,
            tf.equal(token, EOS_ID),
            lambda: (_pad_last(state.output[:, 1:], width), state.scores),
        )

    start = GreedyState(
        position=tf.constant(0),
        output=tf.fill([batch, 1], BOS_ID),
        scores=tf.zeros([batch], tf.float32),
        budgets=max_lengths,
        rows=tf.range(batch),
        cache=step_cache,
        result_tokens=tf.fill([batch, width], PAD_ID),
        result_scores=tf.zeros([batch], tf.float32),
    )
    return _search(start, body, growing="output")


def _sample(logits, topk, temperature, seed):
    """One id per row from softmax(logits / temperature), restricted to the top k."""
    logits = logits / temperature
    if topk > 0:
        kth = tf.math.top_k(logits, k=topk).values[:, -1:]  # [batch, 1]
        logits = tf.where(logits < kth, MASK_NEGATIVE, logits)
    return tf.random.stateless_categorical(logits, 1, seed, dtype=tf.int32)[:, 0]


def length_penalty(length, alpha):
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al., 2016)."""
    return ((5.0 + tf.cast(length, tf.float32)) / 6.0) ** alpha


def _grow(state, step_fn, k, no_repeat_ngram_size):
    """Every one-token extension of the live hypotheses, scored; the best 2k of each
    sentence and the step function's new cache."""
    going = tf.shape(state.alive)[0]
    hypotheses = tf.reshape(state.alive, [going * k, -1])
    logits, cache = step_fn(hypotheses, state.position, state.cache)
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    if no_repeat_ngram_size:
        log_probs = block_repeated_ngrams(log_probs, hypotheses, no_repeat_ngram_size)
    vocab = tf.shape(log_probs)[-1]
    log_probs = _force_eos_at_budget(
        tf.reshape(log_probs, [going, k, vocab]), state.position, state.budgets[:, tf.newaxis]
    )
    totals = tf.reshape(state.alive_scores[:, :, tf.newaxis] + log_probs, [going, k * vocab])
    scores, ids = tf.math.top_k(totals, k=2 * k)
    origins, tokens = ids // vocab, ids % vocab
    sequences = tf.concat(
        [tf.gather(state.alive, origins, batch_dims=1), tokens[:, :, tf.newaxis]], axis=2
    )
    return Candidates(sequences, scores, origins, tf.equal(tokens, EOS_ID)), cache


def _keep_alive(state, candidates, cache, reorder_cache, k):
    """The best k candidates that did not end stay alive, with their rows of the cache.
    Hypotheses move only among their sentence's k rows: what is kept per sentence stays."""
    alive_scores, keep = tf.math.top_k(
        tf.where(candidates.ended, MASK_NEGATIVE, candidates.scores), k=k
    )
    origins = tf.gather(candidates.origins, keep, batch_dims=1)  # [going, k]
    rows = tf.reshape(origins + k * tf.range(tf.shape(origins)[0])[:, tf.newaxis], [-1])
    layers, per_sentence = cache
    return state._replace(
        alive=tf.gather(candidates.sequences, keep, batch_dims=1),
        alive_scores=alive_scores,
        cache=(reorder_cache(layers, rows), per_sentence),
    )


def _finish(state, candidates, alpha, k):
    """The candidates that ended join the finished hypotheses; the best k by normalised
    score stay."""
    width = tf.shape(state.finished)[-1]
    sequences = _pad_last(candidates.sequences, width)
    norm = tf.where(
        candidates.ended,
        candidates.scores / length_penalty(state.position + 1, alpha),
        MASK_NEGATIVE,
    )
    finished_norm, best = tf.math.top_k(tf.concat([state.finished_norm, norm], axis=1), k=k)
    return state._replace(
        finished=tf.gather(tf.concat([state.finished, sequences], 1), best, batch_dims=1),
        finished_scores=tf.gather(
            tf.concat([state.finished_scores, candidates.scores], 1), best, batch_dims=1
        ),
        finished_norm=finished_norm,
    )


def _continue(state, alpha, n_best, k, cache_rows):
    """The next position, without the sentences done: at their budget, or when their best
    live hypothesis cannot beat their n-th best finished one (the length penalty grows
    with length, so the budget bounds the best a live hypothesis could reach)."""
    best_alive = state.alive_scores[:, 0] / length_penalty(state.budgets, alpha)
    done = (state.position + 1 >= state.budgets) | (
        best_alive <= state.finished_norm[:, n_best - 1]
    )
    return _retire(
        state._replace(position=state.position + 1),
        done,
        lambda: (state.finished[:, :n_best, 1:], state.finished_scores[:, :n_best]),
        beam_size=k,
        cache_rows=cache_rows,
    )


def beam_search(
    model, source, max_lengths, beam_size=4, alpha=0.6, n_best=1, no_repeat_ngram_size=0
):
    """Beam search with the GNMT length penalty.

    Hypotheses are ranked by (sum of token log-probabilities) / length_penalty(length,
    alpha); alpha 0 ranks by the sum alone. A sentence leaves the batch once none of its
    live hypotheses can beat its n-th best finished one (or at its budget).

    Args:
        model, source, max_lengths: as `greedy_search`.
        beam_size: int, hypotheses kept per sentence.
        alpha: float, length penalty exponent.
        n_best: int <= beam_size, hypotheses returned per sentence.
        no_repeat_ngram_size: as `greedy_search`.

    Returns:
        tokens: [batch, n_best, max(max_lengths)] int32, best first; PAD after each EOS.
        scores: [batch, n_best] float32, sums of log-probabilities (not length-normalised).
    """
    batch, k = tf.shape(source)[0], beam_size
    enc_output, padding_mask = run_encoder(model, source)
    cache, step_fn = cached_step(model, source, enc_output, padding_mask, beam_size=k)

    def cache_rows(cache, hypotheses, sentences):
        layers, per_sentence = cache
        return (
            model.decoder.reorder_cache(layers, hypotheses, sentences),
            _rows(per_sentence, sentences),
        )

    width = tf.reduce_max(max_lengths) + 1  # BOS and the longest budget
    unused = tf.fill([batch, k], MASK_NEGATIVE)  # scores of no hypothesis

    def body(state):
        candidates, cache = _grow(state, step_fn, k, no_repeat_ngram_size)
        state = _keep_alive(state, candidates, cache, model.decoder.reorder_cache, k)
        state = _finish(state, candidates, alpha, k)
        return _continue(state, alpha, n_best, k, cache_rows)

    start = BeamState(
        position=tf.constant(0),
        alive=tf.fill([batch, k, 1], BOS_ID),
        # one live hypothesis (BOS) to start from: the other k - 1 rows are not used yet
        alive_scores=tf.concat([tf.zeros([batch, 1]), unused[:, 1:]], axis=1),
        finished=tf.fill([batch, k, width], PAD_ID),
        finished_scores=unused,
        finished_norm=unused,
        budgets=max_lengths,
        rows=tf.range(batch),
        cache=cache,
        result_tokens=tf.fill([batch, n_best, width - 1], PAD_ID),
        result_scores=tf.zeros([batch, n_best]),
    )
    return _search(start, body, growing="alive")


def sequence_scores(model, source, targets):
    """The model's summed log-probability of each target given its source (teacher forcing):
    what the searches report as a hypothesis' score.

    source: [batch, src_len] int32; targets: [batch, len] int32 ids without BOS, ending with
    EOS, PAD after. Returns [batch] float32.
    """
    inputs = tf.concat([tf.fill([tf.shape(targets)[0], 1], BOS_ID), targets[:, :-1]], axis=1)
    masks = create_masks(source, inputs)
    logits, _ = model(
        source,
        inputs,
        training=False,
        enc_padding_mask=masks[0],
        look_ahead_mask=masks[1],
        dec_padding_mask=masks[2],
    )
    token_scores = tf.gather(tf.nn.log_softmax(tf.cast(logits, tf.float32)), targets, batch_dims=2)
    return tf.reduce_sum(token_scores * tf.cast(targets != PAD_ID, tf.float32), axis=1)


def output_budgets(model, source, eval_config):
    """`max_output_lengths` with the ratio and offset of `eval_config`, capped by the
    model's longest target."""
    return max_output_lengths(
        source, eval_config.max_length_ratio, eval_config.max_length_offset, model.pe_target - 1
    )


def decode(model, source, max_lengths, eval_config):
    """The search `eval_config` names (beam_size > 1: beam search, else greedy or
    sampling): (tokens [batch, len], scores [batch]) of the best hypothesis."""
    if eval_config.beam_size > 1:
        tokens, scores = beam_search(
            model,
            source,
            max_lengths,
            eval_config.beam_size,
            eval_config.length_penalty,
            no_repeat_ngram_size=eval_config.no_repeat_ngram_size,
        )
        return tokens[:, 0], scores[:, 0]
    return greedy_search(
        model,
        source,
        max_lengths,
        sampling_topk=eval_config.sampling_topk,
        sampling_temperature=eval_config.sampling_temperature,
        no_repeat_ngram_size=eval_config.no_repeat_ngram_size,
    )
