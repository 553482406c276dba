"""ament_flake8, as every ament_python package runs it (``colcon test``): its own configuration
(99 columns, its ignore list) over the package, the simulators, the benchmarks, the launch files
and the tests. Where flake8's plugins (import order, docstrings, quotes) are installed, as on a
ROS 2 machine, ament_flake8 enables them too; the pinned tooling here has none (see the README).
"""
from pathlib import Path

import pytest
from ament_flake8.main import main_with_errors

REPO = Path(__file__).resolve().parent.parent
CHECKED = ('rnn_perception', 'sim', 'benchmarks', 'launch', 'test', 'setup.py')


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    rc, errors = main_with_errors(argv=[str(REPO / path) for path in CHECKED])
    assert rc == 0, f'Found {len(errors)} code style errors / warnings:\n' + '\n'.join(errors)
