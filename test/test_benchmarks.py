"""``make bench``: every benchmark in one run, one JSON, one markdown table, the README's copy."""
from __future__ import annotations

import argparse
import json
import os
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN_ALL = REPO / 'benchmarks' / 'run_all.py'
README_TEMPLATE = 'intro\n<!-- bench:start -->\nold table\n<!-- bench:end -->\noutro\n'


def run_all(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUN_ALL), *arguments],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def test_run_all_writes_one_json_one_table_and_the_readme_block(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text(README_TEMPLATE)
    result = run_all(
        '--quick',
        '--only',
        'cells',
        'tactile_node',
        '--out',
        str(tmp_path / 'results'),
        '--readme',
        str(readme),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / 'results' / 'latest.json').read_text())
    assert report['machine']['torch'] and report['machine']['cores']
    assert set(report['benchmarks']) == {'cells', 'tactile_node'}
    for name, benchmark in report['benchmarks'].items():
        numbers = [*benchmark['figures'].values(), *benchmark['ratios'].values()]
        assert benchmark['figures'], name
        assert all(
            isinstance(value, (int, float)) and math.isfinite(value) and value > 0
            for value in numbers
        ), name
    assert report['benchmarks']['cells']['ratios'].keys() == {
        f'{cell}_{path}_over_torch_throughput_1t'
        for cell in ('lstm', 'gru', 'rnn') for path in ('ours', 'loop')
    } | {f'{cell}_bf16_over_fp32_throughput_1t' for cell in ('lstm', 'gru', 'rnn')}
    table = (tmp_path / 'results' / 'latest.md').read_text()
    assert '| tactile_node: tactile node step, CPU | step_p50_ms |' in table
    assert 'ratio gru_ours_over_torch_throughput_1t' in table
    text = readme.read_text()
    assert text.startswith('intro\n<!-- bench:start -->\n') and text.endswith(
        '<!-- bench:end -->\noutro\n'
    )
    assert 'old table' not in text and table in text


def test_run_all_refuses_a_readme_without_the_markers_and_unknown_benchmarks(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text('no markers here\n')
    result = run_all(
        '--quick', '--only', 'tactile_node', '--out', str(tmp_path), '--readme', str(readme)
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1].startswith('run_all: error: ')
        and 'bench:start' in result.stderr
    )
    assert readme.read_text() == 'no markers here\n'
    assert not (tmp_path / 'latest.json').exists()  # refused before running any benchmark
    result = run_all('--only', 'no_such_benchmark', '--out', str(tmp_path))
    assert result.returncode == 2 and 'unknown benchmark(s) no_such_benchmark' in result.stderr


def test_onnx_step_benchmark_times_both_models_on_both_backends():
    result = subprocess.run([sys.executable, str(REPO / 'benchmarks' / 'bench_onnx_step.py'),
                             '--steps', '60', '--json'], capture_output=True, text=True, cwd=REPO,
                            timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    paths = [f'{model}_{level}' for model in ('collision', 'tactile')
             for level in ('engine', 'node')]
    assert set(report['ratios']) == {f'{path}_torch_over_onnxruntime_p50' for path in paths}
    assert all(value > 0 for key, value in report['figures'].items() if 'difference' not in key)
    for path in paths:
        assert report['figures'][f'{path}_onnxruntime_max_relative_difference'] < 1e-5


def test_streaming_benchmark_runs_in_memory_and_streaming_at_both_sizes(tmp_path):
    """The smallest size (8 and 32 episodes in shards of 2, 2 held, a tiny architecture): the
    JSON's fields, not the timings; the streams held no more than 2 shards."""
    from test_collision_training import TINY_ARCHITECTURE

    result = subprocess.run([sys.executable, str(REPO / 'benchmarks' / 'bench_streaming.py'),
                             '--episodes', '8', '--episodes-per-shard', '2',
                             '--shards-in-memory', '2', '--work', str(tmp_path), '--json',
                             '--', *TINY_ARCHITECTURE],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report['benchmark'] == 'streaming' and report['scale'] == 4
    runs = ('in_memory_1x', 'streaming_1x', 'streaming_4x')
    assert set(report['figures']) == {
        f'{run}_{figure}' for run in runs for figure in (
            'peak_rss_mb', 'peak_rss_before_epoch_mb', 'peak_rss_after_epoch_mb',
            'episodes_per_s', 'frames_per_s', 'epoch_seconds', 'episodes_per_cpu_s',
            'peak_resident_shards', 'shards')}
    assert set(report['ratios']) == {
        'streaming_4x_over_streaming_1x_peak_rss', 'streaming_4x_over_in_memory_1x_peak_rss',
        'streaming_over_in_memory_episodes_per_s_1x',
        'streaming_over_in_memory_episodes_per_cpu_s_1x',
        'streaming_4x_over_in_memory_1x_episodes_per_s', 'in_memory_over_streaming_peak_rss_1x'}
    figures = report['figures']
    for run in runs:    # the peak after each of the two epochs, never below the one before
        after = figures.pop(f'{run}_peak_rss_after_epoch_mb')
        assert len(after) == 2
        assert figures[f'{run}_peak_rss_before_epoch_mb'] <= after[0] <= after[1]
    assert all(value > 0 for value in [*figures.values(), *report['ratios'].values()])
    assert figures['in_memory_1x_shards'] == figures['in_memory_1x_peak_resident_shards'] == 4
    assert figures['streaming_1x_peak_resident_shards'] <= 2
    assert figures['streaming_4x_shards'] == 16
    assert figures['streaming_4x_peak_resident_shards'] <= 2


def test_collision_node_benchmark_times_the_frozen_step_against_both_window_layouts():
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / 'benchmarks' / 'bench_collision_node.py'),
            '--frames',
            '200',
            '--latency-frames',
            '300',
            '--variants',
            '--json',
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
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


def test_collision_models_benchmark_times_each_model_on_both_backends(tmp_path):
    from rnn_perception.models.collision import default_weights_path

    # a copy with its graph beside it: onnxruntime starts without an export
    other = tmp_path / 'other.safetensors'
    for suffix in ('.safetensors', '.onnx'):
        shutil.copyfile(default_weights_path().with_suffix(suffix), other.with_suffix(suffix))
    script = REPO / 'benchmarks' / 'bench_collision_models.py'
    result = subprocess.run([sys.executable, str(script), '--model',
                             f'shipped={default_weights_path()}', '--model', f'other={other}',
                             '--steps', '50', '--json'],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert set(report['ratios']) == {f'{backend}_other_over_shipped_{quantile}'
                                     for backend in ('torch', 'onnxruntime')
                                     for quantile in ('p50', 'p99')}
    assert all(0 < value < math.inf for value in report['figures'].values())
    sys.path.insert(0, str(script.parent))
    try:
        from bench_collision_models import named_models
    finally:
        sys.path.remove(str(script.parent))
    parser = argparse.ArgumentParser()
    for refused in ([f'only={other}'], [f'a={other}', f'a={other}'], ['nameless']):
        with pytest.raises(SystemExit):
            named_models(refused, parser)


def test_compressed_decode_benchmark_compares_both_paths_on_both_sizes():
    script = REPO / 'benchmarks' / 'bench_compressed_decode.py'
    result = subprocess.run([sys.executable, str(script), '--frames', '10', '--json'],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report['ratios'].keys() == {'640x480_full_over_reduced_p50',
                                       '1280x720_full_over_reduced_p50'}
    for size in ('640x480', '1280x720'):
        # reduced decoding feeds the model nearly the same pixels as full decoding
        assert 0 < report['figures'][f'{size}_model_input_mean_abs_difference'] < 2
        assert report['figures'][f'{size}_reduced_p50_ms'] > 0


STRESS = REPO / 'benchmarks' / 'stress_tests.py'
JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="test_a" name="test_passes" time="0.1"/>
<testcase classname="test_a" name="test_fails" time="0.1">\
<failure message="assert 1 == 2"/></testcase>
<testcase classname="test_b" name="test_errors" time="0.1"><error message="fixture"/></testcase>
<testcase classname="test_b" name="test_skipped" time="0.0"><skipped message="no cuda"/></testcase>
</testsuite></testsuites>"""


def test_stress_counts_failures_and_errors_of_a_junit_report_and_leaves_skips_out(tmp_path):
    sys.path.insert(0, str(STRESS.parent))
    try:
        from stress_tests import failed_tests
    finally:
        sys.path.remove(str(STRESS.parent))
    (tmp_path / 'report.xml').write_text(JUNIT)
    assert failed_tests(tmp_path / 'report.xml') == (
        3,
        ['test_a::test_fails', 'test_b::test_errors'],
    )


def stress(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(STRESS), *arguments], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


@pytest.fixture
def tiny_tests(tmp_path) -> str:
    """A test file of its own for the stress script to run: what it counts is pytest's report,
    whatever the tests are, and the suite's own files would each cost a start of ROS and torch."""
    tests = tmp_path / 'tiny' / 'test_tiny.py'
    tests.parent.mkdir()
    tests.write_text('def test_adds():\n    assert 1 + 1 == 2\n\n\n'
                     'def test_multiplies():\n    assert 2 * 3 == 6\n')
    return str(tests)


def test_stress_runs_pytest_beside_a_busy_process_and_prints_the_pass_count(tmp_path, tiny_tests):
    # One run: that runs are counted one by one is test_stress_counts_a_pytest_that_dies_...'s
    result = stress('--all', '--runs', '1', '--busy', '1', '--logs', str(tmp_path),
                    '--tests', tiny_tests, '--', '-k', 'test_adds')
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith('run 1/1: 1 passed, 0 failed in ')
    assert lines[1] == ('1 of 1 runs of the whole suite passed, 1 busy process(es) beside; '
                        f'pytest output in {tmp_path}')
    assert '1 passed' in (tmp_path / 'run1.log').read_text()


def test_stress_counts_a_run_that_ran_nothing_as_failed(tmp_path, tiny_tests):
    result = stress('--runs', '1', '--busy', '0', '--logs', str(tmp_path),
                    '--tests', tiny_tests, '--', '-k', 'no_such_test')
    assert result.returncode == 1, result.stdout
    assert '0 of 1 runs of the dds-marked tests passed' in result.stdout


def test_stress_counts_a_pytest_that_dies_without_a_report_and_shows_why(tmp_path, tiny_tests):
    """A pytest killed by a segfault writes no report; here one that cannot start stands in."""
    result = stress('--runs', '2', '--busy', '0', '--logs', str(tmp_path),
                    '--tests', tiny_tests, '--', '--no-such-option')
    assert result.returncode == 1, result.stdout
    assert 'pytest exited 4 without a report' in result.stdout
    assert 'no-such-option' in result.stdout          # the excerpt of its output
    assert result.stdout.count('1 failed in ') == 2   # each run counts; none stops the rest
    assert 'pytest itself (exit status 4): failed 2 of 2' in result.stdout


def test_stress_shows_where_a_crashed_pytest_died():
    sys.path.insert(0, str(STRESS.parent))
    try:
        from stress_tests import crash_excerpt
    finally:
        sys.path.remove(str(STRESS.parent))
    log = ('test/test_a.py ....\nFatal Python error: Segmentation fault\n\nCurrent thread:\n'
           '  File "test_b.py", line 9 in test_crashes\n' + 'x\n' * 100)
    excerpt = crash_excerpt(log, lines=4)
    assert excerpt.splitlines() == [
        'Fatal Python error: Segmentation fault', '', 'Current thread:',
        '  File "test_b.py", line 9 in test_crashes']
