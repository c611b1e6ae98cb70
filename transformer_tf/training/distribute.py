"""tf.distribute: which strategy a run uses, and who writes files in multi-worker training.

One code path serves every strategy: the trainer builds the model and optimizer in
`strategy.scope()`, feeds the data through `distribute_datasets_from_function`, and runs
each update with `strategy.run`. The default strategy (one device) is the same path with
one replica.
"""

import json
import logging
import os
from pathlib import Path

import tensorflow as tf

from transformer_tf.errors import UserError

log = logging.getLogger(__name__)


def _tpu_strategy(tpu):
    """A TPUStrategy for `tpu` (a name, a grpc:// address, or "local" on a TPU VM)."""
    if not _tpu_present(tpu):
        raise UserError(
            "distribute.strategy is 'tpu' but no TPU is named (distribute.tpu or "
            "TPU_NAME) or attached (/dev/accel*); run on a TPU VM, name the TPU, "
            "or use another strategy."
        )
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=None if tpu in (None, "") else tpu
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as err:
        where = f"TPU '{tpu}'" if tpu else "a TPU"
        raise UserError(
            f"distribute.strategy is 'tpu' but {where} could not be reached "
            f"({str(err).splitlines()[0][:200]}); set distribute.tpu to the TPU's "
            "name or grpc:// address, or use another strategy."
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def _tpu_present(tpu):
    """Whether a TPU is named (config or TPU_NAME) or attached (a TPU VM's /dev/accel*)."""
    return bool(tpu or os.environ.get("TPU_NAME") or list(Path("/dev").glob("accel*")))


def make_strategy(distribute_config):
    """The `tf.distribute.Strategy` the `distribute` section names.

    auto: a TPU when one is named or attached, mirrored over all GPUs when there are
    several, else the default strategy.
    """
    name = distribute_config.strategy
    # Physical devices: listing logical ones would start TensorFlow's runtime, after which
    # multi-worker collectives can no longer be configured.
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        if _tpu_present(distribute_config.tpu):
            name = "tpu"
        else:
            name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "one_device":
        strategy = tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    elif name == "mirrored":
        # Every GPU; without GPUs every logical CPU device (one, unless split on purpose).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    elif name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise UserError(
                "distribute.strategy is 'multi_worker' but TF_CONFIG is not set; "
                "set it on every machine (see the README's distributed section)."
            )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "tpu":
        strategy = _tpu_strategy(distribute_config.tpu)
    else:
        raise ValueError(f"unknown strategy {name!r}")
    log.info("distribution: %s, %d replica(s)", name, strategy.num_replicas_in_sync)
    return strategy


def is_chief(strategy):
    """Whether this process writes checkpoints, logs and exports: always, except on the
    non-chief workers of multi-worker training."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
