"""Decoding: greedy, sampling and beam search, batched, the whole loop in the graph
(`tf.while_loop`), with a per-layer key/value cache.

Every search calls a *step function* `step(output, position, cache) -> (logits, cache)`:
`output` [batch, position + 1] holds the ids so far (BOS first). The cached step feeds only
the newest id and appends its keys and values to each decoder layer's cache (encoder keys
and values are computed once per sentence); the full step re-runs the whole decoder, which
is slower and exists to check the cache against.

Every output stops at EOS or at its sentence's length budget, where EOS is forced, so no
output is longer than its budget and every search ends the same way.
"""

import tensorflow as tf

from transformer_tf.data.tokenizers import BOS_ID, EOS_ID, PAD_ID
from transformer_tf.model.masks import MASK_NEGATIVE, create_look_ahead_mask, create_padding_mask


def max_output_lengths(source, ratio, offset, limit):
    """Per-sentence decoding budget: ratio * source tokens + offset, at most `limit`.

    [batch, src_len] -> [batch] int32.
    """
    source_lengths = tf.reduce_sum(tf.cast(tf.not_equal(source, PAD_ID), tf.float32), axis=1)
    lengths = tf.cast(tf.math.ceil(ratio * source_lengths), tf.int32) + offset
    return tf.minimum(lengths, limit)


def encode(model, source):
    """Encoder output and padding mask of a source batch."""
    padding_mask = create_padding_mask(source)
    enc_output, _ = model.encoder(source, training=False, padding_mask=padding_mask)
    return enc_output, padding_mask


def cached_step(model, enc_output, padding_mask):
    """(initial state, step function) feeding one new id per step. The state holds each
    decoder layer's cache and the source padding mask, one row per hypothesis."""

    def step(output, position, state):
        layers, mask = state
        x, layers, _ = model.decoder.step(output[:, -1], position, layers, mask)
        return model.final_layer(x), (layers, mask)  # [batch, vocab]

    return (model.decoder.init_cache(enc_output), padding_mask), step


def full_step(model, enc_output, padding_mask):
    """(initial state, step function) re-running the decoder over all ids each step."""

    def step(output, position, state):
        memory, mask = state
        look_ahead_mask = create_look_ahead_mask(tf.shape(output)[1])
        dec_output, _ = model.decoder(
            output, memory, training=False, look_ahead_mask=look_ahead_mask, padding_mask=mask
        )
        return model.final_layer(dec_output[:, -1, :]), state

    return (enc_output, padding_mask), step


def _loose(structure):
    """Shape invariants with every dimension free (caches grow along their length axis,
    and searches drop the rows that have ended)."""
    return tf.nest.map_structure(lambda t: tf.TensorShape([None] * t.shape.rank), structure)


def _rows(structure, indices):
    """The rows `indices` of every tensor in `structure`."""
    return tf.nest.map_structure(lambda t: tf.gather(t, indices), structure)


def _retire(ended, rows, results, values, going, state, beam_size=1):
    """Sentences that `ended` leave the search.

    Their rows of `values()` (a function returning one row per sentence still going, called
    only when some sentence ended) are written into `results` (one row per sentence of the
    batch) at their batch `rows`; the other sentences keep their rows
    of `rows`, of `going` (one row per sentence) and of `state` (`beam_size` rows per
    sentence). Returns (results, rows, going, state). Nothing is copied on a step where no
    sentence ended.
    """

    def retire():
        done, kept = tf.where(ended)[:, 0], tf.where(~ended)[:, 0]
        at = tf.gather(rows, done)[:, tf.newaxis]
        written = tf.nest.map_structure(
            lambda r, v: tf.tensor_scatter_nd_update(r, at, tf.gather(v, done)), results, values()
        )
        kept_rows = tf.reshape(
            kept[:, tf.newaxis] * beam_size + tf.range(beam_size, dtype=kept.dtype), [-1]
        )
        return written, *_rows((rows, going), kept), _rows(state, kept_rows)

    return tf.cond(tf.reduce_any(ended), retire, lambda: (results, rows, going, state))


def _force_eos_at_budget(log_probs, position, max_lengths):
    """log_probs [..., vocab]: where `position + 1` reaches the budget, only EOS remains."""
    at_budget = (position + 1 >= max_lengths)[..., tf.newaxis]  # [..., 1]
    only_eos = tf.where(tf.range(tf.shape(log_probs)[-1]) == EOS_ID, 0.0, MASK_NEGATIVE)
    return tf.where(at_budget, only_eos, log_probs)


def greedy_search(
    model,
    source,
    max_lengths,
    cache=True,
    sampling_topk=0,
    sampling_temperature=1.0,
    seed=None,
    encoded=None,
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
        encoded: optional `encode(model, source)`, when the caller has it already.

    Returns:
        tokens: [batch, max(max_lengths)] int32 without the leading BOS; PAD after EOS.
        scores: [batch] float32, sum of the log-probabilities of the chosen tokens.
    """
    batch = tf.shape(source)[0]
    width = tf.reduce_max(max_lengths)
    enc_output, padding_mask = encoded or encode(model, source)
    state, step_fn = (cached_step if cache else full_step)(model, enc_output, padding_mask)
    seed = tf.constant([0, 0], tf.int32) if seed is None else seed

    def body(i, output, rows, budgets, scores, state, tokens, final_scores):
        # output [going, i + 1]: the sentences still going, at batch rows `rows`.
        logits, state = step_fn(output, i, state)
        logits = tf.cast(logits, tf.float32)
        if sampling_topk:
            next_token = _sample(logits, sampling_topk, sampling_temperature, seed + i)
        else:
            next_token = tf.argmax(logits, axis=-1, output_type=tf.int32)  # [going]
        # At its budget a sentence ends (see _force_eos_at_budget; done on the chosen ids
        # here, which spares a pass over the vocabulary).
        next_token = tf.where(i + 1 >= budgets, EOS_ID, next_token)
        # log softmax of the chosen ids only: logit - logsumexp(logits).
        scores += tf.gather(logits, next_token, batch_dims=1) - tf.reduce_logsumexp(logits, axis=-1)
        output = tf.concat([output, next_token[:, tf.newaxis]], axis=1)
        (tokens, final_scores), rows, (output, budgets, scores), state = _retire(
            tf.equal(next_token, EOS_ID),
            rows,
            (tokens, final_scores),
            lambda: (tf.pad(output[:, 1:], [[0, 0], [0, width - i - 1]]), scores),
            (output, budgets, scores),
            state,
        )
        return i + 1, output, rows, budgets, scores, state, tokens, final_scores

    loop_vars = (
        tf.constant(0),
        tf.fill([batch, 1], BOS_ID),
        tf.range(batch),
        max_lengths,
        tf.zeros([batch], tf.float32),
        state,
        tf.fill([batch, width], PAD_ID),
        tf.zeros([batch], tf.float32),
    )
    *_, tokens, scores = tf.while_loop(_going, body, loop_vars, shape_invariants=_loose(loop_vars))
    return tokens, scores


def _going(i, output, rows, *_):
    """Loop condition of the searches: some sentence has not ended."""
    return tf.size(rows) > 0


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


def beam_search(model, source, max_lengths, beam_size=4, alpha=0.6, n_best=1):
    """Beam search with the GNMT length penalty.

    Hypotheses are ranked by (sum of token log-probabilities) / length_penalty(length,
    alpha); alpha 0 ranks by the sum alone. The greedy hypothesis enters the finished pool
    first: plain beam search can prune the greedy path early and end below it, this one
    never ranks its best below greedy's (and a good early hypothesis lets it stop sooner).
    A sentence leaves the batch once none of its live hypotheses can beat its n-th best
    finished one.

    Args:
        model, source, max_lengths: as `greedy_search`.
        beam_size: int, hypotheses kept per sentence.
        alpha: float, length penalty exponent.
        n_best: int <= beam_size, hypotheses returned per sentence.

    Returns:
        tokens: [batch, n_best, max(max_lengths)] int32, best first; PAD after each EOS.
        scores: [batch, n_best] float32, sums of log-probabilities (not length-normalised).
    """
    batch, k = tf.shape(source)[0], beam_size
    enc_output, padding_mask = encode(model, source)
    # Every sentence's encoder output (and mask) repeated for each beam.
    cache, step_fn = cached_step(
        model, tf.repeat(enc_output, k, axis=0), tf.repeat(padding_mask, k, axis=0)
    )
    width = tf.reduce_max(max_lengths) + 1  # finished hypotheses: BOS and the budget

    def pad_to_width(sequences):
        return tf.pad(sequences, [[0, 0], [0, 0], [0, width - tf.shape(sequences)[2]]])

    greedy, greedy_scores = greedy_search(
        model, source, max_lengths, encoded=(enc_output, padding_mask)
    )
    # [batch, 1, width]: greedy_search's tokens are already max(max_lengths) wide.
    greedy = tf.concat([tf.fill([batch, 1], BOS_ID), greedy], 1)[:, tf.newaxis]
    greedy_lengths = tf.reduce_sum(tf.cast(greedy[:, 0, 1:] != PAD_ID, tf.int32), axis=1)

    def body(i, alive, rows, going, cache, results):
        # alive: [going, k, i + 1] hypotheses of the sentences still going (batch `rows`);
        # alive_scores [going, k] their summed log-probs; finished [going, k, width] the
        # best k that ended (scores summed, and normalised by the length penalty).
        alive_scores, finished, finished_scores, finished_norm, budgets, greedy = going
        b = tf.shape(alive)[0]
        logits, cache = step_fn(tf.reshape(alive, [b * k, -1]), i, cache)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        vocab = tf.shape(log_probs)[-1]
        log_probs = _force_eos_at_budget(
            tf.reshape(log_probs, [b, k, vocab]), i, budgets[:, tf.newaxis]
        )
        candidates = tf.reshape(alive_scores[:, :, tf.newaxis] + log_probs, [b, k * vocab])
        top_scores, top_ids = tf.math.top_k(candidates, k=2 * k)  # [b, 2k]
        beams, tokens = top_ids // vocab, top_ids % vocab
        sequences = tf.concat(
            [tf.gather(alive, beams, batch_dims=1), tokens[:, :, tf.newaxis]], axis=2
        )  # [b, 2k, i + 2]
        ended = tf.equal(tokens, EOS_ID)

        # The best k candidates that did not end stay alive, with their caches.
        alive_rank = tf.where(ended, MASK_NEGATIVE, top_scores)
        alive_scores, keep = tf.math.top_k(alive_rank, k=k)
        alive = tf.gather(sequences, keep, batch_dims=1)
        origin = tf.gather(beams, keep, batch_dims=1)  # [b, k] beam each came from
        flat_origin = tf.reshape(origin + k * tf.range(b)[:, tf.newaxis], [-1])
        # Hypotheses move only among their sentence's k rows: the padding mask stays.
        cache = (model.decoder.reorder_cache(cache[0], flat_origin), cache[1])

        # Candidates that ended join the finished ones (the greedy one is there already);
        # the best k by normalised score stay.
        sequences = pad_to_width(sequences)
        is_greedy = tf.reduce_all(tf.equal(sequences, greedy), axis=2)
        new_norm = tf.where(
            ended & ~is_greedy, top_scores / length_penalty(i + 1, alpha), MASK_NEGATIVE
        )
        pool = tf.concat([finished, sequences], axis=1)
        pool_norm = tf.concat([finished_norm, new_norm], axis=1)
        pool_scores = tf.concat([finished_scores, top_scores], axis=1)
        finished_norm, best = tf.math.top_k(pool_norm, k=k)
        finished = tf.gather(pool, best, batch_dims=1)
        finished_scores = tf.gather(pool_scores, best, batch_dims=1)

        # A sentence is done at its budget, or when its best live hypothesis cannot beat
        # its n-th best finished one: the length penalty grows with length, so the
        # sentence's budget bounds the best a live hypothesis could reach.
        best_alive = alive_scores[:, 0] / length_penalty(budgets, alpha)
        done = (i + 1 >= budgets) | (best_alive <= finished_norm[:, n_best - 1])
        results, rows, going, cache = _retire(
            done,
            rows,
            results,
            lambda: (finished[:, :n_best, 1:], finished_scores[:, :n_best]),
            (alive, (alive_scores, finished, finished_scores, finished_norm, budgets, greedy)),
            cache,
            k,
        )
        alive, going = going
        return i + 1, alive, rows, going, cache, results

    others = tf.fill([batch, k - 1], MASK_NEGATIVE)
    going = (
        tf.concat([tf.zeros([batch, 1]), others], axis=1),  # alive_scores: one beam
        tf.concat([greedy, tf.fill([batch, k - 1, width], PAD_ID)], 1),
        tf.concat([greedy_scores[:, tf.newaxis], others], axis=1),
        tf.concat(
            [(greedy_scores / length_penalty(greedy_lengths, alpha))[:, tf.newaxis], others], axis=1
        ),
        max_lengths,
        greedy,
    )
    results = (tf.fill([batch, n_best, width - 1], PAD_ID), tf.zeros([batch, n_best]))
    loop_vars = (
        tf.constant(0),
        tf.fill([batch, k, 1], BOS_ID),
        tf.range(batch),
        going,
        cache,
        results,
    )
    *_, (tokens, scores) = tf.while_loop(
        _going, body, loop_vars, shape_invariants=_loose(loop_vars)
    )
    return tokens, scores


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
            model, source, max_lengths, eval_config.beam_size, eval_config.length_penalty
        )
        return tokens[:, 0], scores[:, 0]
    return greedy_search(
        model,
        source,
        max_lengths,
        sampling_topk=eval_config.sampling_topk,
        sampling_temperature=eval_config.sampling_temperature,
    )
