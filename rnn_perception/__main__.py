"""``python -m rnn_perception``: see :mod:`rnn_perception.commands`."""
import sys

from .commands import main

sys.exit(main())
