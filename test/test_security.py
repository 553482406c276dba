"""The package's sources never unpickle and never hand a string to a shell.

An ``ast`` scan of every module under ``rnn_perception/`` and ``sim/`` (code only: comments and
docstrings that name these constructs are not code) refuses:

* pickle-based loading: importing ``pickle``/``marshal``/``shelve``/``dill``/``joblib``,
  ``torch.load``, ``torch.jit.load``, ``numpy.load`` without a literal ``allow_pickle=False``;
* unsafe YAML: ``yaml.load``/``full_load``/``unsafe_load`` (``yaml.safe_load`` only);
* shells and code from strings: ``eval``/``exec``, ``os.system``/``os.popen``,
  ``subprocess.getoutput``/``getstatusoutput``, and any ``subprocess`` call whose ``shell`` is
  not a literal ``False``.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parent.parent
SCANNED = ('rnn_perception', 'sim')

BANNED_MODULES = {
    'pickle',
    '_pickle',
    'cPickle',
    'marshal',
    'shelve',
    'dill',
    'joblib',
    'cloudpickle',
}
BANNED_CALLS = {
    'torch.load': 'unpickles',
    'torch.jit.load': 'unpickles',
    'yaml.load': 'use yaml.safe_load',
    'yaml.full_load': 'use yaml.safe_load',
    'yaml.unsafe_load': 'use yaml.safe_load',
    'eval': 'runs a string as code',
    'exec': 'runs a string as code',
    'os.system': 'runs a shell',
    'os.popen': 'runs a shell',
    'subprocess.getoutput': 'runs a shell',
    'subprocess.getstatusoutput': 'runs a shell',
}
SUBPROCESS_CALLS = {
    'subprocess.run',
    'subprocess.Popen',
    'subprocess.call',
    'subprocess.check_call',
    'subprocess.check_output',
}


def _is_false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


class _Scanner(ast.NodeVisitor):
    """Collects ``'<line>: <problem>'`` for one module, resolving import aliases."""

    def __init__(self):
        self.aliases: Dict[str, str] = {}
        self.problems: List[str] = []

    def _report(self, node: ast.AST, problem: str) -> None:
        self.problems.append(f'{node.lineno}: {problem}')

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            bound = alias.asname or alias.name.split('.')[0]        # `import os.path` binds `os`
            self.aliases[bound] = alias.name if alias.asname else bound
            if alias.name.split('.')[0] in BANNED_MODULES:
                self._report(node, f'imports {alias.name}')

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ''
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f'{module}.{alias.name}'
        if node.level == 0 and module.split('.')[0] in BANNED_MODULES:
            self._report(node, f'imports from {module}')

    def _name(self, node: ast.expr) -> str:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return ''
        parts.append(self.aliases.get(node.id, node.id))
        return '.'.join(reversed(parts))

    def visit_Call(self, node: ast.Call) -> None:
        name = self._name(node.func)
        keywords = {keyword.arg: keyword.value for keyword in node.keywords}
        if name in BANNED_CALLS:
            self._report(node, f'calls {name} ({BANNED_CALLS[name]})')
        elif name == 'numpy.load' and not _is_false(
            keywords.get('allow_pickle', ast.Constant(True))
        ):
            self._report(node, 'calls numpy.load without allow_pickle=False')
        elif name in SUBPROCESS_CALLS and 'shell' in keywords and not _is_false(keywords['shell']):
            self._report(node, f'calls {name} with shell={ast.unparse(keywords["shell"])}')
        self.generic_visit(node)


def scan(source: str) -> List[str]:
    scanner = _Scanner()
    scanner.visit(ast.parse(source))
    return scanner.problems


def package_modules() -> List[Path]:
    return sorted(path for folder in SCANNED for path in (REPO / folder).rglob('*.py'))


def test_the_scanner_finds_each_construct_in_code_and_none_in_words():
    source = '''
"""Docstring: torch.load, pickle.loads, eval(text), os.system('ls'), shell=True."""
import pickle                                # 3
import numpy as np
import subprocess as sp
from yaml import load as yaml_load
from torch import load
# a comment: torch.load(path), subprocess.run(cmd, shell=True)
text = "eval('1') and os.system('x')"
pickle.loads(b'')                            # (reported once, at the import)
torch.load('m.pt')                           # 11
load('m.pt')                                 # 12
np.load('a.npy')                             # 13
np.load('a.npy', allow_pickle=True)          # 14
np.load('a.npy', allow_pickle=False)
yaml_load(stream)                            # 16
eval('1 + 1')                                # 17
exec(code)                                   # 18
model.eval()
os.system('ls')                              # 20
sp.run(['ls'], shell=True)                   # 21
sp.Popen(command, shell=flag)                # 22
sp.run(['ls'], shell=False)
sp.check_output(['ls'])
import os.path
os.popen('ls')                               # 26
'''
    lines = [int(problem.split(':')[0]) for problem in scan(source)]
    assert lines == [3, 11, 12, 13, 14, 16, 17, 18, 20, 21, 22, 26], scan(source)


def test_the_scan_covers_the_package():
    names = {path.relative_to(REPO).as_posix() for path in package_modules()}
    assert {'rnn_perception/models/weights_file.py', 'rnn_perception/demo.py', 'sim/config.py',
            'rnn_perception/data/shards.py'} <= names


@pytest.mark.parametrize(
    'path', package_modules(), ids=lambda path: path.relative_to(REPO).as_posix()
)
def test_no_pickle_no_shell_no_code_from_strings(path):
    assert scan(path.read_text(encoding='utf-8')) == []
