"""``torchrun``: two gloo ranks on the CPU train as one process with the same global batch and
seed (weights within 1e-5 after the same optimiser steps, the same training loss), rank 0 alone
writing, for both trainers (streaming one shard at a time, each rank preparing its shares only)
and the zoo; a batch's shares cover it once."""
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from rnn_perception.commands import main
from rnn_perception.device import cpu_threads
from rnn_perception.files import load_checkpoint
from rnn_perception.training import collision as collision_training
from rnn_perception.training import tactile as tactile_training
from rnn_perception.training.distributed import Ranks
from sim.tactile.config import load_tactile_config
from sim.tactile.generate import generate
from ranked_commands import PLOTS, skip
from test_collision_training import TINY_ARCHITECTURE, write_dataset

REPO = Path(__file__).resolve().parents[1]
WORLD_SIZE = 2
TOLERANCE = 1e-5
# Gradients summed over shares vs the whole batch: float32 sums in another order, relative to
# the largest element of each gradient.
SHARE_TOLERANCE = 1e-5
RUN_TIMEOUT_S = 300


def tactile_data(root: Path) -> Path:
    """12 grasps of 2 s, 5 of them slipping (shorter ones barely move: nothing to learn), 4 a
    shard."""
    config = load_tactile_config(overrides={
        'episodes': 12, 'seed': 4, 'episodes_per_shard': 4, 'episode': {'duration_s': 2.0},
        'output': {'out': str(root)}})
    generate(config, progress=False)
    return root


def no_data(root: Path) -> None:
    return None


@dataclass(frozen=True)
class Run:
    """A command, its data, what it writes and where its per-epoch rows are."""

    argv: Callable[[Path, Path], list]   # (data, out) -> command line
    make_data: Callable[[Path], Path]
    weights: str                          # under out
    rows: str


RUNS = {
    # 14 training throws in 2 shards, streamed one at a time, in global batches of 5, 3, 5 and
    # 1: rank 1's share of the last is empty
    'collision': Run(
        lambda data, out: ['train', 'collision', '--data', str(data), '--out',
                           str(out / 'm.safetensors'), '--epochs', '1', '--batch-size', '5',
                           '--shards-in-memory', '1', *TINY_ARCHITECTURE, '--device', 'cpu',
                           '--quiet'],
        write_dataset, 'm.safetensors', 'm_epochs.json'),
    # 10 training grasps in 3 shards, streamed one at a time, in global batches of 4, 4 and 2
    'tactile': Run(
        lambda data, out: ['train', 'tactile', '--data', str(data), '--out',
                           str(out / 'm.safetensors'), '--epochs', '1', '--batch-size', '4',
                           '--shards-in-memory', '1', '--hidden-size', '4', '--head-size', '4',
                           '--device', 'cpu', '--quiet'],
        tactile_data, 'm.safetensors', 'm_epochs.json'),
    # 1257 digits in global batches of 300, the last of 57
    'zoo': Run(
        lambda data, out: ['zoo', '--model-type', 'gru', '--hx', '6', '--epochs', '1',
                           '--batch-size', '300', '--out', str(out), '--device', 'cpu',
                           '--quiet'],
        no_data, 'model.safetensors', 'metrics.json'),
}


@pytest.mark.parametrize('world_size', [1, 2, 3, 4])
@pytest.mark.parametrize('size', [1, 2, 5, 6])
def test_the_shares_of_a_batch_cover_it_once(world_size, size):
    batch = list(range(size))
    shares = [Ranks(rank, world_size).share(batch) for rank in range(world_size)]
    assert sorted(item for part, weight in shares if weight for item in part) == batch
    for rank, (part, weight) in enumerate(shares):  # an empty share stands in with weight 0
        assert (weight, len(part) > 0) == ((1.0, True) if rank < size else (0.0, True))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Every run of :data:`RUNS` in one torchrun launch of two gloo ranks (starting ranks costs
    far more than these trainings: see ``ranked_commands.py``); their data and output roots."""
    root = tmp_path_factory.mktemp('distributed')
    for name in RUNS:
        (root / name).mkdir()
    data = {name: run.make_data(root / name / 'data') for name, run in RUNS.items()}
    commands = root / 'commands.json'
    commands.write_text(json.dumps([run.argv(data[name], root / name / 'two')
                                    for name, run in RUNS.items()]))
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone',
         f'--nproc-per-node={WORLD_SIZE}', str(REPO / 'test' / 'ranked_commands.py'),
         str(commands)],
        cwd=REPO, env={**os.environ, 'PYTHONPATH': str(REPO)}, capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, data


@pytest.mark.parametrize('name', sorted(RUNS))
def test_two_gloo_ranks_train_as_one_process(name, trained, monkeypatch):
    root, data = trained
    run, one, two = RUNS[name], root / name / 'one', root / name / 'two'
    for module, plot in PLOTS:  # skipped in the ranks too
        monkeypatch.setattr(module, plot, skip)
    with cpu_threads(1):  # torchrun gives each rank one thread
        assert main(run.argv(data[name], one)) == 0
    expected, got = (load_checkpoint(path / run.weights).tensors for path in (one, two))
    for tensor_name, tensor in expected.items():
        assert torch.allclose(got[tensor_name], tensor, rtol=0, atol=TOLERANCE), tensor_name
    rows = [json.loads((path / run.rows).read_text()) for path in (one, two)]
    assert rows[1][0]['train_loss'] == pytest.approx(rows[0][0]['train_loss'], rel=1e-6)


def gradients(loss: torch.Tensor, module: torch.nn.Module) -> dict:
    module.zero_grad()
    loss.backward()
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


@pytest.fixture
def one_thread():
    """Tiny models on a busy 2-core machine: two threads fight, one runs 20x faster."""
    with cpu_threads(1):
        yield


def assert_shares_add_up(whole: dict, shares: list) -> None:
    """The whole batch's gradients are the sum of the shares' (what DDP's all-reduce adds)."""
    for name, gradient in whole.items():
        total = sum(share[name] for share in shares)
        scale = gradient.abs().max()
        assert (total - gradient).abs().max() <= SHARE_TOLERANCE * scale, name


def test_tactile_shares_add_up_to_the_whole_batch_gradient(trained, one_thread):
    """The torchrun test cannot see a wrong loss scale (Adam and clipping are blind to it): the
    gradients of the shares, each over the whole batch's count, must add up to the batch's."""
    _, data = trained
    episodes, _ = tactile_training.load_episodes(str(data['tactile']))
    config = tactile_training.TactileConfig(hidden_size=4, head_size=4)
    torch.manual_seed(0)
    model = tactile_training.TactilePredictor(config)
    model.set_normalisation(tactile_training.normalisation([episodes], config.horizon))
    with torch.no_grad():  # away from the zero head, so that every gradient is non-zero
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    step, batch = tactile_training.TrainingLoss(model, torch.device('cpu')), episodes[:5]
    count = tactile_training.error_count([e.num_frames for e in batch], config.horizon)
    assert_shares_add_up(gradients(step(batch, count), model), [
        gradients(step(Ranks(rank, WORLD_SIZE).share(batch)[0], count), model)
        for rank in range(WORLD_SIZE)])


def test_collision_shares_add_up_to_the_whole_batch_gradient(trained, one_thread):
    """As for tactile, with the augmentation drawn for the whole batch and applied by rows."""
    _, data = trained
    config = collision_training.CollisionConfig(
        image_size=(16, 16), encoder_channels=[4, 4], recurrent_channels=[6, 6],
        recurrent_strides=[1, 2])
    torch.manual_seed(0)
    model = collision_training.CollisionPredictor(config)
    episodes, _ = collision_training.load_episodes(str(data['collision']), (16, 16),
                                                   model.feature_size())
    auxiliary = collision_training.AuxiliaryHeads(model)
    step = collision_training.TrainingLoss(model, auxiliary, 1.0, 1.0)
    batch, device = episodes[:5], torch.device('cpu')
    totals = collision_training.BatchTotals.of([e.weights(0.5) for e in batch], device)
    draws = collision_training.Augmentation.draw(len(batch), torch.Generator().manual_seed(0),
                                                 0.15)

    def loss(rows):
        share = collision_training.make_batch([batch[row] for row in rows], 0.5, 0.3, device)
        return step(collision_training.augmented(share, draws.rows(rows)), totals)[0]

    assert_shares_add_up(gradients(loss(range(len(batch))), step), [
        gradients(loss(Ranks(rank, WORLD_SIZE).share(range(len(batch)))[0]), step)
        for rank in range(WORLD_SIZE)])
