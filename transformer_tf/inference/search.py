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
from transformer_tf.model.masks import create_look_ahead_mask, create_padding_mask

NEG_INF = -1e9


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
    """(initial cache, step function) feeding one new id per step."""

    def step(output, position, cache):
        x, cache, _ = model.decoder.step(output[:, -1:], position, cache, padding_mask)
        return model.final_layer(x[:, -1, :]), cache  # [batch, vocab]

    return model.decoder.init_cache(enc_output), step


def full_step(model, enc_output, padding_mask):
    """(empty state, step function) re-running the decoder over all ids each step."""

    def step(output, position, cache):
        look_ahead_mask = create_look_ahead_mask(tf.shape(output)[1])
        dec_output, _ = model.decoder(output, enc_output, training=False,
                                      look_ahead_mask=look_ahead_mask, padding_mask=padding_mask)
        return model.final_layer(dec_output[:, -1, :]), cache

    return (), step


def _loose(structure):
    """Shape invariants with every dimension free (caches grow along their length axis)."""
    return tf.nest.map_structure(lambda t: tf.TensorShape([None] * t.shape.rank), structure)


def _force_eos_at_budget(log_probs, position, max_lengths):
    """log_probs [..., vocab]: where `position + 1` reaches the budget, only EOS remains."""
    at_budget = (position + 1 >= max_lengths)[..., tf.newaxis]  # [..., 1]
    only_eos = tf.where(tf.range(tf.shape(log_probs)[-1]) == EOS_ID, 0.0, NEG_INF)
    return tf.where(at_budget, only_eos, log_probs)


def greedy_search(model, source, max_lengths, cache=True, sampling_topk=0,
                  sampling_temperature=1.0, seed=None, encoded=None):
    """Greedy decoding (or sampling, with `sampling_topk` > 0).

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
        tokens: [batch, out_len] int32 without the leading BOS; PAD after each EOS.
        scores: [batch] float32, sum of the log-probabilities of the chosen tokens.
    """
    batch = tf.shape(source)[0]
    enc_output, padding_mask = encoded or encode(model, source)
    state, step_fn = (cached_step if cache else full_step)(model, enc_output, padding_mask)
    seed = tf.constant([0, 0], tf.int32) if seed is None else seed

    def body(i, output, finished, scores, state):
        logits, state = step_fn(output, i, state)
        logits = tf.cast(logits, tf.float32)
        if sampling_topk:
            next_token = _sample(logits, sampling_topk, sampling_temperature, seed + i)
        else:
            next_token = tf.argmax(logits, axis=-1, output_type=tf.int32)  # [batch]
        # At its budget a sentence ends (see _force_eos_at_budget; done on the chosen ids
        # here, which spares a pass over the vocabulary).
        next_token = tf.where(i + 1 >= max_lengths, EOS_ID, next_token)
        # log softmax of the chosen ids only: logit - logsumexp(logits).
        next_score = (tf.gather(logits, next_token, batch_dims=1)
                      - tf.reduce_logsumexp(logits, axis=-1))
        next_token = tf.where(finished, PAD_ID, next_token)
        scores += tf.where(finished, 0.0, next_score)
        finished |= tf.equal(next_token, EOS_ID)
        output = tf.concat([output, next_token[:, tf.newaxis]], axis=1)
        return i + 1, output, finished, scores, state

    def not_done(i, output, finished, scores, state):
        return tf.logical_not(tf.reduce_all(finished))

    loop_vars = (tf.constant(0), tf.fill([batch, 1], BOS_ID), tf.zeros([batch], tf.bool),
                 tf.zeros([batch], tf.float32), state)
    _, output, _, scores, _ = tf.while_loop(
        not_done, body, loop_vars,
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None]),
                          tf.TensorShape([None]), tf.TensorShape([None]), _loose(state)))
    return output[:, 1:], scores


def _sample(logits, topk, temperature, seed):
    """One id per row from softmax(logits / temperature), restricted to the top k."""
    logits = logits / temperature
    if topk > 0:
        kth = tf.math.top_k(logits, k=topk).values[:, -1:]  # [batch, 1]
        logits = tf.where(logits < kth, NEG_INF, logits)
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

    Args:
        model, source, max_lengths: as `greedy_search`.
        beam_size: int, hypotheses kept per sentence.
        alpha: float, length penalty exponent.
        n_best: int <= beam_size, hypotheses returned per sentence.

    Returns:
        tokens: [batch, n_best, out_len] int32, best first; PAD after each EOS.
        scores: [batch, n_best] float32, sums of log-probabilities (not length-normalised).
    """
    batch, k = tf.shape(source)[0], beam_size
    enc_output, padding_mask = encode(model, source)
    # Every sentence's encoder output (and mask, and budget) repeated for each beam.
    cache, step_fn = cached_step(model, tf.repeat(enc_output, k, axis=0),
                                 tf.repeat(padding_mask, k, axis=0))
    beam_lengths = tf.reshape(tf.repeat(max_lengths, k), [batch, k])
    longest = tf.reduce_max(max_lengths)
    width = longest + 1  # finished hypotheses: BOS and at most `longest` tokens

    def pad_to_width(sequences):
        return tf.pad(sequences, [[0, 0], [0, 0], [0, width - tf.shape(sequences)[2]]])

    greedy, greedy_scores = greedy_search(model, source, max_lengths,
                                          encoded=(enc_output, padding_mask))
    greedy = pad_to_width(tf.concat([tf.fill([batch, 1], BOS_ID), greedy], 1)[:, tf.newaxis])
    greedy_lengths = tf.reduce_sum(tf.cast(greedy[:, 0, 1:] != PAD_ID, tf.int32), axis=1)

    def body(i, alive, alive_scores, finished, finished_scores, finished_norm, cache):
        # alive: [batch, k, i + 1]; alive_scores: [batch, k] summed log-probs.
        logits, cache = step_fn(tf.reshape(alive, [batch * k, -1]), i, cache)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        vocab = tf.shape(log_probs)[-1]
        log_probs = _force_eos_at_budget(tf.reshape(log_probs, [batch, k, vocab]), i,
                                         beam_lengths)
        candidates = tf.reshape(alive_scores[:, :, tf.newaxis] + log_probs, [batch, k * vocab])
        top_scores, top_ids = tf.math.top_k(candidates, k=2 * k)  # [batch, 2k]
        beams, tokens = top_ids // vocab, top_ids % vocab
        sequences = tf.concat([tf.gather(alive, beams, batch_dims=1),
                               tokens[:, :, tf.newaxis]], axis=2)  # [batch, 2k, i + 2]
        ended = tf.equal(tokens, EOS_ID)

        # The best k candidates that did not end stay alive, with their caches.
        alive_rank = tf.where(ended, NEG_INF, top_scores)
        alive_scores, keep = tf.math.top_k(alive_rank, k=k)
        alive = tf.gather(sequences, keep, batch_dims=1)
        origin = tf.gather(beams, keep, batch_dims=1)  # [batch, k] beam each came from
        flat_origin = tf.reshape(origin + k * tf.range(batch)[:, tf.newaxis], [-1])
        cache = model.decoder.reorder_cache(cache, flat_origin)

        # Candidates that ended join the finished ones (the greedy one is there already);
        # the best k by normalised score stay.
        sequences = pad_to_width(sequences)
        is_greedy = tf.reduce_all(tf.equal(sequences, greedy), axis=2)
        new_norm = tf.where(ended & ~is_greedy, top_scores / length_penalty(i + 1, alpha),
                            NEG_INF)
        pool = tf.concat([finished, sequences], axis=1)
        pool_norm = tf.concat([finished_norm, new_norm], axis=1)
        pool_scores = tf.concat([finished_scores, top_scores], axis=1)
        finished_norm, best = tf.math.top_k(pool_norm, k=k)
        finished = tf.gather(pool, best, batch_dims=1)
        finished_scores = tf.gather(pool_scores, best, batch_dims=1)
        return i + 1, alive, alive_scores, finished, finished_scores, finished_norm, cache

    def not_done(i, alive, alive_scores, finished, finished_scores, finished_norm, cache):
        # Stop when no alive hypothesis can still beat the n-th best finished one: the
        # length penalty grows with length, so the longest budget bounds the best it
        # could reach.
        best_alive = alive_scores[:, 0] / length_penalty(longest, alpha) if alpha > 0 else \
            alive_scores[:, 0]
        worst_finished = finished_norm[:, n_best - 1]
        return tf.logical_and(i < longest,
                              tf.reduce_any(best_alive > worst_finished))

    first = tf.concat([tf.zeros([batch, 1]), tf.fill([batch, k - 1], NEG_INF)], axis=1)
    others = tf.fill([batch, k - 1], NEG_INF)
    loop_vars = (tf.constant(0), tf.fill([batch, k, 1], BOS_ID), first,
                 tf.concat([greedy, tf.fill([batch, k - 1, width], PAD_ID)], axis=1),
                 tf.concat([greedy_scores[:, tf.newaxis], others], axis=1),
                 tf.concat([(greedy_scores / length_penalty(greedy_lengths, alpha))
                            [:, tf.newaxis], others], axis=1),
                 cache)
    _, _, _, finished, finished_scores, _, _ = tf.while_loop(
        not_done, body, loop_vars,
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None, None]),
                          tf.TensorShape([None, None]), tf.TensorShape([None, None, None]),
                          tf.TensorShape([None, None]), tf.TensorShape([None, None]),
                          _loose(cache)))
    return finished[:, :n_best, 1:], finished_scores[:, :n_best]


def output_budgets(model, source, eval_config):
    """`max_output_lengths` with the ratio and offset of `eval_config`, capped by the
    model's longest target."""
    return max_output_lengths(source, eval_config.max_length_ratio,
                              eval_config.max_length_offset, model.pe_target - 1)


def decode(model, source, max_lengths, eval_config):
    """The search `eval_config` names (beam_size > 1: beam search, else greedy or
    sampling): (tokens [batch, len], scores [batch]) of the best hypothesis."""
    if eval_config.beam_size > 1:
        tokens, scores = beam_search(model, source, max_lengths, eval_config.beam_size,
                                     eval_config.length_penalty)
        return tokens[:, 0], scores[:, 0]
    return greedy_search(model, source, max_lengths, sampling_topk=eval_config.sampling_topk,
                         sampling_temperature=eval_config.sampling_temperature)
