"""``python -m minimovq train|tokenize|train-prior|sample|eval``; see :mod:`minimovq.cli`."""
import sys

from minimovq.cli import main

if __name__ == "__main__":
    sys.exit(main())
