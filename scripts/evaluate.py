"""`python scripts/evaluate.py ...` is `transformer-tf evaluate ...`."""

import sys

from transformer_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
