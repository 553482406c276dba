"""``python -m rnn_perception``: see ``rnn_perception.cli``."""
import sys

from .cli import main

sys.exit(main())
