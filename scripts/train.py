"""`python scripts/train.py ...` is `transformer-tf train ...`."""

import sys

from transformer_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
