"""Flake hunt: run the DDS-heavy tests (marker ``dds``) or the whole suite again and again with
busy processes beside them, and count what passed (``make test-stress``).

A loaded CI machine is where a test that waits on a fixed sleep, or a node that loses a message
to a slow reader, fails: ``--busy`` processes that spin a core each stand in for the load. Each
run is a fresh ``pytest`` process (its own DDS domain); a JUnit XML report of each run names the
tests that failed.

    .venv/bin/python benchmarks/stress_tests.py [--runs 5] [--busy 1] [--all] [-- PYTEST_ARGS...]

Prints one line per run (passed, failed, seconds) and, at the end, ``N of M runs passed`` and
how often each failing test failed. Exit status 1 when any run failed.
"""
from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Counter, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
BUSY_LOOP = 'while True: pass'


def failed_tests(report: Path) -> Tuple[int, List[str]]:
    """``(tests run, ids of those that failed or errored)`` from a pytest JUnit XML report."""
    cases = ElementTree.parse(report).getroot().iter('testcase')
    run, failed = 0, []
    for case in cases:
        if case.find('skipped') is not None:
            continue
        run += 1
        if case.find('failure') is not None or case.find('error') is not None:
            failed.append(f"{case.get('classname')}::{case.get('name')}")
    return run, failed


def crash_excerpt(log: str, lines: int = 40) -> str:
    """The part of a crashed pytest's output that says where: faulthandler's ``Fatal Python
    error`` and the threads' tracebacks (up to ``lines`` lines), else the output's end."""
    start = log.find('Fatal Python error')
    text = log[start:] if start >= 0 else log[-2000:]
    return '\n'.join(text.splitlines()[:lines])


def pytest_run(report: Path, log: Path, whole_suite: bool, extra: List[str],
               tests: str = 'test') -> Tuple[int, List[str], float]:
    """One pytest process over the DDS tests (or all) of ``tests``, its output kept in ``log``:
    ``(tests run, failed ids, seconds)``. A pytest that dies (a segfault in a native library)
    writes no report: it counts as one failure named after its exit status, with faulthandler's
    traceback printed."""
    selection = [] if whole_suite else ['-m', 'dds']
    command = [sys.executable, '-m', 'pytest', '-q', tests, '-p', 'no:cacheprovider',
               f'--junitxml={report}', *selection, *extra]
    started = time.monotonic()
    with open(log, 'w', encoding='utf-8') as output:
        status = subprocess.run(command, cwd=REPO, stdout=output,
                                stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - started
    if report.exists():
        return (*failed_tests(report), seconds)
    text = log.read_text(encoding='utf-8', errors='replace')
    print(f'pytest exited {status} without a report (output: {log}):\n{crash_excerpt(text)}',
          flush=True)
    return 1, [f'pytest itself (exit status {status})'], seconds


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description='Run the DDS-heavy tests (or --all of them) N times with busy processes '
                    'beside them and print pass counts. Arguments after -- go to pytest.')
    parser.add_argument('--runs', type=int, default=5,
                        help='pytest runs, one after another (default 5)')
    parser.add_argument('--busy', type=int, default=1,
                        help='processes spinning a core each beside the tests (default 1)')
    parser.add_argument('--all', action='store_true',
                        help='the whole suite, not only the dds-marked tests')
    parser.add_argument('--logs', type=Path, metavar='DIR',
                        help="keep each run's pytest output here (default: runs/stress-<time>)")
    parser.add_argument('--tests', default='test', metavar='PATH',
                        help='the test directory or file pytest collects (default: test)')
    parser.add_argument('pytest_args', nargs='*', help='more pytest arguments (after --)')
    args = parser.parse_args(argv)
    if args.runs < 1 or args.busy < 0:
        parser.error('--runs must be >= 1 and --busy >= 0')
    busy = [subprocess.Popen([sys.executable, '-c', BUSY_LOOP]) for _ in range(args.busy)]
    failures: Counter[str] = collections.Counter()
    passed_runs = 0
    logs = args.logs or REPO / 'runs' / time.strftime('stress-%Y%m%d-%H%M%S')
    logs.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix='stress_tests_') as folder:
            for run in range(1, args.runs + 1):
                tests, failed, seconds = pytest_run(Path(folder) / f'run{run}.xml',
                                                    logs / f'run{run}.log', args.all,
                                                    args.pytest_args, args.tests)
                failures.update(failed)
                passed_runs += tests > 0 and not failed   # a run that ran nothing proves nothing
                print(f'run {run}/{args.runs}: {tests - len(failed)} passed, {len(failed)} failed '
                      f'in {seconds:.0f} s{"" if not failed else ": " + ", ".join(failed)}',
                      flush=True)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    what = 'whole suite' if args.all else 'dds-marked tests'
    print(f'{passed_runs} of {args.runs} runs of the {what} passed, '
          f'{args.busy} busy process(es) beside; pytest output in {logs}')
    for test, count in failures.most_common():
        print(f'  {test}: failed {count} of {args.runs}')
    return 0 if passed_runs == args.runs else 1


if __name__ == '__main__':
    sys.exit(main())
