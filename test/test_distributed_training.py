"""``torchrun``: two gloo ranks on the CPU train as one process with the same global batch and
seed (weights within 1e-5 after the same optimiser steps, the same per-epoch losses), rank 0
alone writing; a batch's shares cover it once."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnn_perception.commands import main
from rnn_perception.device import cpu_threads
from rnn_perception.files import load_checkpoint
from rnn_perception.training import tactile as tactile_training
from rnn_perception.training.distributed import Ranks
from sim.tactile.config import load_tactile_config
from sim.tactile.generate import generate

REPO = Path(__file__).resolve().parents[1]
WORLD_SIZE = 2
# 12 grasps of 2 s, 5 of them slipping: 10 train, so a global batch of 6 makes 2 optimiser steps,
# the second split 2 + 2 and the first 3 + 3.
TACTILE = {'episodes': 12, 'seed': 4, 'episode': {'duration_s': 2.0}}
OPTIONS = ['--epochs', '1', '--batch-size', '6', '--hidden-size', '4', '--head-size', '4',
           '--device', 'cpu', '--quiet']
TOLERANCE = 1e-5
RUN_TIMEOUT_S = 300


@pytest.mark.parametrize('world_size', [1, 2, 3, 4])
@pytest.mark.parametrize('size', [1, 2, 5, 6])
def test_the_shares_of_a_batch_cover_it_once(world_size, size):
    batch = list(range(size))
    shares = [Ranks(rank, world_size).share(batch) for rank in range(world_size)]
    assert sorted(item for part, weight in shares if weight for item in part) == batch
    for rank, (part, weight) in enumerate(shares):  # an empty share stands in with weight 0
        assert (weight, len(part) > 0) == ((1.0, True) if rank < size else (0.0, True))


def test_two_gloo_ranks_train_as_one_process(tmp_path, monkeypatch):
    config = load_tactile_config(overrides={**TACTILE, 'output': {'out': str(tmp_path / 'd')}})
    generate(config, progress=False)
    one, two = tmp_path / 'one' / 'm.safetensors', tmp_path / 'two' / 'm.safetensors'
    for name in ('plot_curves', 'plot_trajectories'):  # the one-process run's plots: not compared
        monkeypatch.setattr(tactile_training, name, lambda *args, **kwargs: None)
    with cpu_threads(1):  # torchrun gives each rank one thread
        assert main(['train', 'tactile', '--data', str(tmp_path / 'd'), '--out', str(one),
                     *OPTIONS]) == 0
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone',
         f'--nproc-per-node={WORLD_SIZE}', '-m', 'rnn_perception', 'train', 'tactile',
         '--data', str(tmp_path / 'd'), '--out', str(two), *OPTIONS],
        cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    expected, got = load_checkpoint(one).tensors, load_checkpoint(two).tensors
    for name, tensor in expected.items():
        assert torch.allclose(got[name], tensor, rtol=0, atol=TOLERANCE), name
    rows = [json.loads(path.with_name('m_epochs.json').read_text()) for path in (one, two)]
    assert rows[1][0]['train_loss'] == pytest.approx(rows[0][0]['train_loss'], rel=1e-6)
    written = sorted(p.name for p in two.parent.iterdir())  # what one process writes, no more
    assert written == sorted(f'm{suffix}' for suffix in (
        '.safetensors', '_epochs.csv', '_epochs.json', '_metrics.json', '_resume.safetensors',
        '_curves.png', '_trajectories.png'))
