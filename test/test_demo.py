"""The README's main command, `python -m rnn_perception demo`: the dodgeball loop through
real DDS."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.dds

REPO = Path(__file__).resolve().parent.parent


def run_demo(*args, timeout=180):
    return subprocess.run([sys.executable, '-m', 'rnn_perception', 'demo', *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_demo_replays_a_bag_through_the_node_and_reports_every_throw(tmp_path):
    from rnn_perception.models.collision import CollisionPredictor, save_collision_model

    torch.manual_seed(0)
    weights = tmp_path / 'collision.safetensors'
    save_collision_model(weights, CollisionPredictor(), {'fps': 30.0, 'threshold': 0.5})
    result = run_demo('--episodes', '3', '--seed', '4', '--weights', str(weights), '--rate', '2',
                      '--out', str(tmp_path / 'demo'))
    assert result.returncode == 0, result.stderr + result.stdout
    # a domain of its own, not the test run's, where earlier tests' killed nodes still linger
    assert (
        re.search(r'^DDS domain (\d+) ', result.stdout, re.MULTILINE)[1]
        != os.environ['ROS_DOMAIN_ID']
    )
    rows = re.findall(
        r'^\s+(\d)\s+(HIT|miss)\s.*\s(\d+)/(\d+)\s+(yes|NO)$', result.stdout, re.MULTILINE
    )
    assert [row[0] for row in rows] == ['0', '1', '2'], result.stdout
    for *_, answered, frames, _ in rows:
        assert int(answered) >= 0.8 * int(frames) > 0, result.stdout
    assert 'throws 3' in result.stdout and 'offline eval --bag:' in result.stdout
    # the node, fed over DDS, answers what the offline evaluation of the same bag computes
    difference = float(
        re.search(r'largest \|P node - P offline\| on the answered frames: (\S+)', result.stdout)[
            1
        ]
    )
    assert difference < 1e-3, result.stdout
    latency = re.search(
        r'end-to-end latency per frame .*: p50 ([\d.]+) ms, p99 ([\d.]+) ms', result.stdout
    )
    assert latency and 0 < float(latency[1]) <= float(latency[2]), result.stdout
    assert (tmp_path / 'demo' / 'collision_traces.png').stat().st_size > 10_000


def test_demo_refuses_bad_arguments_with_one_line(tmp_path):
    arguments = [('--episodes', '0', '--out', str(tmp_path / 'demo')),
                 ('--weights', str(tmp_path / 'missing.safetensors')),
                 ('--bag-image', 'h264')]
    # side by side: each refusal is a start of torch and ROS, and none waits on another
    processes = [subprocess.Popen([sys.executable, '-m', 'rnn_perception', 'demo', *argv],
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for argv in arguments]
    results = [process.communicate(timeout=60)[1] for process in processes]
    (zero_episodes, missing_weights, unknown_image) = [
        (process.returncode, stderr) for process, stderr in zip(processes, results)]
    assert zero_episodes[0] == 1
    assert zero_episodes[1].strip().count('\n') == 0, zero_episodes[1]
    assert zero_episodes[1].startswith('demo: error:'), zero_episodes[1]
    assert missing_weights[0] == 1 and 'missing.safetensors' in missing_weights[1], missing_weights
    assert unknown_image[0] == 2 and "invalid choice: 'h264'" in unknown_image[1], unknown_image
