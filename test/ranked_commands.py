"""Run ``python -m rnn_perception`` command lines one after another in every rank of one
``torchrun`` launch: ``torchrun --nproc-per-node N test/ranked_commands.py COMMANDS.json``.

Why: a rank can join its process group only once per launch, and starting ranks (importing
torch and the package) costs far more than the tiny trainings the tests run; so the rank joins
once here and every command uses that group (``training.distributed.data_parallel``). The
trainers' plots are skipped (half of a tiny run's time): the tests compare weights and losses.
"""
import faulthandler
import json
import sys

import torch.distributed as dist

from rnn_perception.commands import main
from rnn_perception.training import collision, tactile, zoo
from rnn_perception.training.distributed import leave_process_group

PLOTS = ((collision, 'write_reports'), (tactile, 'plot_curves'), (tactile, 'plot_trajectories'),
         (zoo, 'plot_curves'))


def skip(*args, **kwargs) -> None:
    return None


def run(path: str) -> int:
    """Run every command line of the JSON list at ``path``; the first failing status, or 0."""
    with open(path, encoding='utf-8') as stream:
        commands = json.load(stream)
    for module, name in PLOTS:
        setattr(module, name, skip)
    dist.init_process_group('gloo')
    for argv in commands:
        status = main(argv)
        if status != 0:
            return status
    leave_process_group()
    return 0


if __name__ == '__main__':
    faulthandler.enable()      # a rank that aborts shows where, in the test's failure message
    sys.exit(run(sys.argv[1]))
