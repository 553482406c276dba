"""Interrupting a generation (Ctrl-C) leaves no dataset, bag or preview that looks complete."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.dodgeball import generate as generate_module
from sim.dodgeball.config import load_dodgeball_config
from sim.dodgeball.episode import EpisodeSimulator

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
