"""`python scripts/export.py ...` is `transformer-tf export ...`."""

import sys

from transformer_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
