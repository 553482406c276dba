"""The package's floors: every import points down, and a node never loads the offline stack.

Floors, bottom to top (a module may import its own part or any part on a lower floor, never a
peer on its own floor or anything above):

0. ``cli``, ``device``, ``files``: the command-line convention, the device, atomic files
1. ``cells``, ``data``: recurrence; datasets, bags and image messages
2. ``models``, ``ros``: the predictors and their weights files; DDS (QoS, the player)
3. ``runtime``, ``evaluation``: what a node does per message; offline metrics and plots
4. ``nodes``, ``training``: the rclpy nodes; the trainers
5. ``bringup``, ``demo``: whole jobs (nodes in this process; sim, player and node together)
6. ``commands``: the command table, which names every job
7. ``__main__``: ``python -m rnn_perception``

Every import statement counts, including those inside functions (made lazy for start-up time,
they still tie the layers together).
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Tuple

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / 'rnn_perception'
FLOORS = {
    'cli': 0, 'device': 0, 'files': 0,
    'cells': 1, 'data': 1,
    'models': 2, 'ros': 2,
    'runtime': 3, 'evaluation': 3,
    'nodes': 4, 'training': 4,
    'bringup': 5, 'demo': 5, 'export': 5,
    'commands': 6,
    '__main__': 7,
}
# Libraries for offline work, and the parts that may import them: a node never pays for them.
OFFLINE_LIBRARIES = {'matplotlib': {'evaluation', 'training'},
                     'sklearn': {'data', 'evaluation', 'training'},
                     'pybullet': set()}
# Top-level packages of this repository that the installed package must never import.
NOT_SHIPPED = ('sim', 'benchmarks', 'test')


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports(path: Path) -> Iterator[Tuple[str, int]]:
    """``(imported module, line)`` of every import statement in ``path``, relative ones
    resolved."""
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                yield '.'.join(base + ([node.module] if node.module else [])), node.lineno
            else:
                yield node.module, node.lineno


def part(module: str) -> str:
    """The floor part of a package module: ``rnn_perception.runtime.collision`` -> ``runtime``."""
    return module.split('.')[1]


def package_modules():
    return sorted(PACKAGE_DIR.rglob('*.py'))


def test_every_package_part_has_a_floor():
    parts = {
        part(module_name(path))
        for path in package_modules()
        if path != PACKAGE_DIR / '__init__.py'
    }
    assert parts == set(FLOORS), f'parts without a floor: {parts - set(FLOORS)}'


@pytest.mark.parametrize('path', package_modules(), ids=lambda path: module_name(path))
def test_imports_point_down(path):
    if path == PACKAGE_DIR / '__init__.py':
        return
    source = part(module_name(path))
    upward = []
    for target, line in imports(path):
        top = target.split('.')[0]
        if top in NOT_SHIPPED:
            upward.append(f'line {line}: {target} (not part of the installed package)')
        if top == 'rnn_perception' and '.' in target:
            destination = part(target)
            if destination != source and FLOORS[destination] >= FLOORS[source]:
                upward.append(f'line {line}: {target} (floor {FLOORS[destination]}, '
                              f'from {source} on floor {FLOORS[source]})')
        allowed = OFFLINE_LIBRARIES.get(top)
        if allowed is not None and source not in allowed:
            upward.append(f'line {line}: {target} (an offline library, in {source})')
    assert not upward, f'{module_name(path)} imports up or sideways:\n' + '\n'.join(upward)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The rule above fails on a model file that imports the trainer (as weights_file once did)."""
    fake_package = tmp_path / 'rnn_perception'
    (fake_package / 'models').mkdir(parents=True)
    offender = fake_package / 'models' / 'weights_file.py'
    offender.write_text('def load():\n    from ..training.command import training_main\n')
    monkeypatch.setattr(sys.modules[__name__], 'PACKAGE_DIR', fake_package)
    with pytest.raises(AssertionError, match='rnn_perception.training.command'):
        test_imports_point_down(offender)


NODE_PROCESS = '''
import sys
import rclpy
from rnn_perception.nodes.collision_node import CollisionNode
from rnn_perception.nodes.tactile_node import TactileNode

rclpy.init()
nodes = [CollisionNode(), TactileNode()]
print(' '.join(sorted({name.split('.')[0] for name in sys.modules} & set(sys.argv[1:]))))
for node in nodes:
    node.destroy_node()
rclpy.shutdown()
'''


@pytest.mark.dds
def test_a_node_process_loads_no_offline_library():
    """Both nodes started in one process, as ``bringup all`` does: no matplotlib, no sklearn, no
    tqdm, no simulator in ``sys.modules`` (each costs start-up time and memory on a robot)."""
    watched = [*OFFLINE_LIBRARIES, *NOT_SHIPPED]
    result = subprocess.run([sys.executable, '-c', NODE_PROCESS, *watched], capture_output=True,
                            text=True, timeout=300, env=os.environ.copy())
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [], f'a node process loaded: {result.stdout}'
