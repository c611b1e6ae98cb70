"""Where sentence pairs come from: each source returns {split: (sources, targets)}."""

from transformer_tf.data import synthetic

SPLITS = ("train", "validation", "test")


def load_splits(data_config):
    """All splits of the configured data source, as lists of strings."""
    if data_config.source == "synthetic":
        return synthetic.generate_splits(data_config.train_size, data_config.validation_size,
                                         data_config.test_size, data_config.seed)
    raise ValueError(f"unknown data source {data_config.source!r}")
