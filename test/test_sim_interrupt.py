"""Interrupting a generation (Ctrl-C) leaves no dataset, bag or preview that looks complete."""
import signal
import subprocess
import sys
import time
from multiprocessing.pool import ThreadPool
from pathlib import Path

import pytest

from sim.dodgeball import generate as generate_module
from sim.dodgeball.config import load_dodgeball_config
from sim.dodgeball.episode import EpisodeSimulator
from sim.pipeline import imap_bounded

REPO = Path(__file__).resolve().parents[1]


def test_ctrl_c_mid_generation_removes_all_partial_outputs(tmp_path, monkeypatch):
    simulate = EpisodeSimulator.__call__

    def interrupted_at_episode_5(self, index):
        if index == 5:
            raise KeyboardInterrupt
        return simulate(self, index)

    monkeypatch.setattr(EpisodeSimulator, '__call__', interrupted_at_episode_5)
    config = load_dodgeball_config(overrides={
        'episodes': 8, 'episodes_per_shard': 2, 'camera': {'image_size': 16},
        'output': {'out': str(tmp_path / 'data'), 'bag': str(tmp_path / 'bag'),
                   'preview': str(tmp_path / 'sheet.png')}})
    with pytest.raises(KeyboardInterrupt):
        generate_module.generate(config, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('signal_number', [signal.SIGINT, signal.SIGTERM])
def test_signal_to_a_running_command_exits_130_and_leaves_nothing(tmp_path, signal_number):
    process = subprocess.Popen(
        [sys.executable, '-m', 'sim', 'dodgeball', '--episodes', '100000', '--workers', '2',
         '--episodes-per-shard', '1', '--image-size', '16', '--out', str(tmp_path / 'data'),
         '--bag', str(tmp_path / 'bag')],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        # Wait until shards are being written into the staging directory.
        while not list(tmp_path.glob('.data.partial-*/data/shard_00002.npz')):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.05)
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert 'sim: interrupted; partial outputs were removed' in stderr.splitlines()
    assert 'Traceback' not in stderr
    assert list(tmp_path.iterdir()) == []


class CountingPool:
    """A real (thread) pool that records how many tasks were submitted."""

    def __init__(self, pool):
        self.pool, self.submitted = pool, 0

    def apply_async(self, function, args):
        self.submitted += 1
        return self.pool.apply_async(function, args)


@pytest.mark.parametrize('ahead', [1, 4])
def test_workers_never_get_more_than_a_few_episodes_ahead(ahead):
    # A long backlog in the pool's task pipe is what can hang Pool.terminate() on SIGTERM.
    with ThreadPool(2) as threads:
        pool = CountingPool(threads)
        results = []
        for result in imap_bounded(pool, lambda item: item * item, range(20), ahead=ahead):
            results.append(result)
            # Exactly `ahead` submitted beyond the ones handed out: a bounded backlog that
            # still keeps the workers busy.
            assert pool.submitted == min(20, len(results) + ahead)
    assert results == [item * item for item in range(20)]
    assert pool.submitted == 20
