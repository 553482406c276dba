"""``make bench``: every benchmark in one run, one JSON, one markdown table, the README's copy."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN_ALL = REPO / 'benchmarks' / 'run_all.py'
README_TEMPLATE = 'intro\n<!-- bench:start -->\nold table\n<!-- bench:end -->\noutro\n'


def run_all(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUN_ALL), *arguments], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_run_all_writes_one_json_one_table_and_the_readme_block(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text(README_TEMPLATE)
    result = run_all('--quick', '--only', 'cells', 'tactile_node', '--out', str(tmp_path / 'results'),
                     '--readme', str(readme))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / 'results' / 'latest.json').read_text())
    assert report['machine']['torch'] and report['machine']['cores']
    assert set(report['benchmarks']) == {'cells', 'tactile_node'}
    for name, benchmark in report['benchmarks'].items():
        numbers = [*benchmark['figures'].values(), *benchmark['ratios'].values()]
        assert benchmark['figures'], name
        assert all(isinstance(value, (int, float)) and math.isfinite(value) and value > 0 for value in numbers), name
    assert report['benchmarks']['cells']['ratios'].keys() == {
        'lstm_ours_over_torch_throughput', 'gru_ours_over_torch_throughput', 'rnn_ours_over_torch_throughput'}
    table = (tmp_path / 'results' / 'latest.md').read_text()
    assert '| tactile_node: tactile node step, CPU | step_p50_ms |' in table
    assert 'ratio gru_ours_over_torch_throughput' in table
    text = readme.read_text()
    assert text.startswith('intro\n<!-- bench:start -->\n') and text.endswith('<!-- bench:end -->\noutro\n')
    assert 'old table' not in text and table in text


def test_run_all_refuses_a_readme_without_the_markers_and_unknown_benchmarks(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text('no markers here\n')
    result = run_all('--quick', '--only', 'tactile_node', '--out', str(tmp_path), '--readme', str(readme))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith('run_all: error: ') and 'bench:start' in result.stderr
    assert readme.read_text() == 'no markers here\n'
    result = run_all('--only', 'no_such_benchmark', '--out', str(tmp_path))
    assert result.returncode == 2 and 'unknown benchmark(s) no_such_benchmark' in result.stderr


def test_collision_node_benchmark_times_the_frozen_step_against_both_window_layouts():
    result = subprocess.run([sys.executable, str(REPO / 'benchmarks' / 'bench_collision_node.py'), '--frames', '200',
                             '--latency-frames', '300', '--variants', '--json'],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    layouts = report['window_rerun_by_layout_ms']
    assert set(layouts) == {'model_layout', 'channels_last'}
    assert report['window_rerun_ms']['p50'] == min(rerun['p50'] for rerun in layouts.values())
    assert report['step_samples'] > 250 and report['window_samples'] == 60
    # the variants are checked against the unfrozen step's outputs, not only timed
    assert {'float32', 'frozen', 'channels_last'} <= set(report['variants'])
    assert all(variant['within_tolerance'] for variant in report['variants'].values())
    assert report['variants']['frozen']['max_probability_difference'] < 1e-5
