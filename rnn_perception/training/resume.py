"""Resumable training: the whole state of a run after an epoch, in one file, and back.

A pre-empted job (a SLURM or Kubernetes eviction, a node lost, Ctrl-C) loses at most the epoch
it was in: after every epoch a trainer writes ``<stem>_resume.safetensors`` into its run
directory (the zoo: ``resume.safetensors``), atomically
(:func:`~rnn_perception.files.save_checkpoint`: a temporary file renamed over the old one, so a
kill mid-write leaves the previous checkpoint whole). ``--resume`` reads
it back and carries on with the next epoch; the run then ends exactly as if it had never
stopped: same batches, same augmentation, same weights. Without a checkpoint ``--resume``
starts afresh, so a requeued job can run the same command line as the first.

What the file holds: every module's ``state_dict`` (the model and any training-only heads, and
fp16's loss scaler where there is one), the optimiser's and the scheduler's, the random states
(torch's global generator, CUDA's when there is one, the trainer's own ``torch.Generator`` and
numpy ``Generator``, and Python's ``random``), the epochs done and the trainer's progress (the
best epoch's key, the per-epoch rows, the seconds spent), and the run's options with the
dataset's fingerprint: resuming with other ones is refused, because the state would not fit
them.

Safetensors, not ``torch.save``: nothing the package reads is unpickled (README, Security).
Nested states (an optimiser's) are split by :func:`flatten` into tensors and JSON, which keeps
integer keys and tuples apart from strings and lists so they come back as they went in.
"""
from __future__ import annotations

import argparse
import os
import random
from typing import Any, Dict, Mapping, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from ..data.shards import first_difference
from ..files import load_checkpoint, PathLike, save_checkpoint
from .metrics_log import MetricsWriter

RESUME_SUFFIX = 'resume.safetensors'
# Options that do not change what a run computes: a resume may set them differently.
FREE_OPTIONS = ('resume', 'quiet', 'device', 'command')
# Markers of the JSON side of :func:`flatten` (no state_dict uses them as keys).
_TENSOR, _ITEMS, _TUPLE = '__tensor__', '__items__', '__tuple__'


def flatten(value: Any, tensors: Dict[str, Tensor], key: str = 'state') -> Any:
    """``value`` as JSON, its tensors moved into ``tensors`` under dotted keys."""
    if isinstance(value, Tensor):
        tensors[key] = value
        return {_TENSOR: key}
    if isinstance(value, Mapping):
        if all(isinstance(name, str) for name in value):
            return {name: flatten(item, tensors, f'{key}.{name}') for name, item in value.items()}
        return {_ITEMS: [[name, flatten(item, tensors, f'{key}.{name}')]
                         for name, item in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [flatten(item, tensors, f'{key}.{index}') for index, item in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    return value


def unflatten(value: Any, tensors: Mapping[str, Tensor]) -> Any:
    """The inverse of :func:`flatten`."""
    if isinstance(value, dict):
        if _TENSOR in value:
            return tensors[value[_TENSOR]]
        if _ITEMS in value:
            return {name: unflatten(item, tensors) for name, item in value[_ITEMS]}
        if _TUPLE in value:
            return tuple(unflatten(item, tensors) for item in value[_TUPLE])
        return {name: unflatten(item, tensors) for name, item in value.items()}
    if isinstance(value, list):
        return [unflatten(item, tensors) for item in value]
    return value


def run_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The options that shape what a run computes (all but :data:`FREE_OPTIONS`)."""
    return {name: value for name, value in sorted(vars(args).items())
            if name not in FREE_OPTIONS}


class Restored(NamedTuple):
    """Where a restored run stands: the epochs it finished and the trainer's progress."""

    epochs_done: int
    progress: Dict[str, Any]


class ResumableRun:
    """The checkpoint of one training run at ``path``: :meth:`save` after every epoch,
    :meth:`restore` to carry on.

    ``identity``: what must be equal for a checkpoint to fit this run (its options, the
    dataset's fingerprint). ``modules``: named modules (or anything with ``state_dict`` and
    ``load_state_dict``, such as a ``GradScaler``) whose ``state_dict`` is saved;
    ``numpy_rng`` and ``torch_generator``: the trainer's own random streams.
    """

    def __init__(self, path: PathLike, identity: Dict[str, Any], modules: Dict[str, Any],
                 optimizer: torch.optim.Optimizer, schedule,
                 numpy_rng: Optional[np.random.Generator] = None,
                 torch_generator: Optional[torch.Generator] = None):
        self.path = os.fspath(path)
        self.identity = identity
        self.modules = modules
        self.optimizer = optimizer
        self.schedule = schedule
        self.numpy_rng = numpy_rng
        self.torch_generator = torch_generator

    def _state(self) -> Dict[str, Any]:
        random_states = {'torch': torch.get_rng_state(), 'python': random.getstate()}
        if self.numpy_rng is not None:
            random_states['numpy'] = self.numpy_rng.bit_generator.state
        if torch.cuda.is_available():
            random_states['cuda'] = torch.cuda.get_rng_state_all()
        if self.torch_generator is not None:
            random_states['generator'] = self.torch_generator.get_state()
        return {'modules': {name: module.state_dict() for name, module in self.modules.items()},
                'optimizer': self.optimizer.state_dict(),
                'schedule': self.schedule.state_dict(),
                'random': random_states}

    def save(self, epochs_done: int, progress: Dict[str, Any]) -> None:
        """Write the state after ``epochs_done`` epochs, and the trainer's ``progress`` (JSON)."""
        tensors: Dict[str, Tensor] = {}
        state = flatten(self._state(), tensors)
        save_checkpoint(self.path, tensors, {'identity': self.identity, 'state': state,
                                             'epochs_done': epochs_done, 'progress': progress})

    def restore(self) -> Optional[Restored]:
        """Load the checkpoint into the modules, optimiser, scheduler and random streams; None
        when there is none yet.

        Raises:
            ValueError: the checkpoint is unreadable or belongs to a run with other options
                or data.
        """
        if not os.path.exists(self.path):
            return None
        tensors, metadata = load_checkpoint(self.path)
        missing = {'identity', 'state', 'epochs_done', 'progress'} - set(metadata)
        if missing:
            raise ValueError(f'{self.path}: not a training checkpoint (no {", ".join(missing)})')
        difference = first_difference(metadata['identity'], self.identity)
        if difference is not None:
            key, before, now = difference
            raise ValueError(
                f'{self.path}: written by a run with {key} {before!r}, this one has {now!r}; '
                'resume with the same options and data, or start afresh without --resume')
        state = unflatten(metadata['state'], tensors)
        for name, module in self.modules.items():
            module.load_state_dict(state['modules'][name])
        self.optimizer.load_state_dict(state['optimizer'])
        self.schedule.load_state_dict(state['schedule'])
        self._set_random_states(state['random'])
        return Restored(metadata['epochs_done'], metadata['progress'])

    def _set_random_states(self, states: Dict[str, Any]) -> None:
        torch.set_rng_state(states['torch'])
        random.setstate(states['python'])
        if self.numpy_rng is not None:
            self.numpy_rng.bit_generator.state = states['numpy']
        if 'cuda' in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states['cuda'])
        if self.torch_generator is not None:
            self.torch_generator.set_state(states['generator'])


class Progress(NamedTuple):
    """Where a trainer's epoch loop starts: the first epoch to run, the best epoch's selection
    key so far (None: none yet) and the training seconds spent before this process."""

    first_epoch: int
    best: Any
    seconds: float


def begin(run: ResumableRun, resume: bool, epochs_file: MetricsWriter,
          quiet: bool = False) -> Progress:
    """Restore ``run`` when ``resume`` and it has a checkpoint (the per-epoch rows go back into
    ``epochs_file``); else a fresh start."""
    restored = run.restore() if resume else None
    if restored is None:
        if resume and not quiet:
            print(f'no checkpoint {run.path} yet: starting afresh')
        return Progress(1, None, 0.0)
    progress = restored.progress
    epochs_file.rows = [dict(row) for row in progress['rows']]
    if not quiet:
        print(f'resuming after epoch {restored.epochs_done} from {run.path}')
    return Progress(restored.epochs_done + 1, progress['best'], progress['seconds'])


def end_epoch(run: ResumableRun, epoch: int, best: Any, epochs_file: MetricsWriter,
              seconds: float) -> None:
    """Checkpoint ``run`` after ``epoch``: the state, the best key, the rows, the seconds."""
    run.save(epoch, {'best': best, 'rows': epochs_file.rows, 'seconds': seconds})


def training_checkpoint(path: PathLike, args: argparse.Namespace, dataset_sha256: str,
                        modules: Dict[str, Any], optimizer: torch.optim.Optimizer,
                        schedule, numpy_rng: Optional[np.random.Generator] = None,
                        torch_generator: Optional[torch.Generator] = None) -> ResumableRun:
    """A trainer's :class:`ResumableRun`: it fits runs with the same options
    (:func:`run_options`) on the same dataset."""
    return ResumableRun(path, {'options': run_options(args), 'dataset': dataset_sha256},
                        modules, optimizer, schedule, numpy_rng, torch_generator)
