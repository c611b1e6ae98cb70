"""`python scripts/translate.py ...` is `transformer-tf translate ...`."""

import sys

from transformer_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["translate", *sys.argv[1:]]))
