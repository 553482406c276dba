"""`colcon build` of the package succeeds and installs what ROS 2 tooling expects.

The package's source (as git sees it: tracked plus untracked-not-ignored files) is
copied into a temporary workspace ``ws/src/rnn_perception`` and built there with
the venv's colcon; build/install/log all live in the temp dir, so the repository
is never touched. colcon runs with a scrubbed environment: no underlay
(AMENT_PREFIX_PATH, COLCON_PREFIX_PATH, CMAKE_PREFIX_PATH are dropped, so a stale
or sourced workspace can't leak in or warn) and COLCON_HOME in the temp dir (the
user's ~/.colcon defaults/mixins are ignored).
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = 'rnn_perception'
REPO = Path(__file__).resolve().parent.parent
# What setup.py / package.xml need to build the package.
SOURCE_PATHS = ['package.xml', 'setup.py', 'setup.cfg', 'resource', PACKAGE, 'launch', 'config']
# Probes added to the copy so the launch/config data_files mapping is exercised
# even while launch/ and config/ are still empty.
PROBE_LAUNCH = 'zz_colcon_probe.launch.py'
PROBE_CONFIG = 'zz_colcon_probe.yaml'
BUILD_TIMEOUT_SEC = 300


def _source_files() -> list[str]:
    """Package files relative to the repo: tracked + untracked-not-ignored."""
    try:
        out = subprocess.run(
            ['git', '-C', str(REPO), 'ls-files', '-z', '--cached', '--others',
             '--exclude-standard', '--', *SOURCE_PATHS],
            check=True, capture_output=True, timeout=60).stdout
        files = [f for f in out.decode().split('\0') if f]
    except (OSError, subprocess.SubprocessError):  # no git / not a checkout
        files = []
        for top in SOURCE_PATHS:
            path = REPO / top
            if path.is_file():
                files.append(top)
            for p in sorted(path.rglob('*')) if path.is_dir() else []:
                rel = p.relative_to(REPO)
                if p.is_file() and not any(part == '__pycache__' or part.endswith('.egg-info')
                                           for part in rel.parts) and p.suffix != '.pyc':
                    files.append(str(rel))
    # `--cached` still lists files deleted in the working tree.
    return sorted(f for f in set(files) if (REPO / f).is_file())


def _console_scripts(setup_py: str) -> list[str]:
    """Names in setup.py's entry_points['console_scripts'], read with a regex."""
    block = re.search(r"""['"]console_scripts['"]\s*:\s*\[(.*?)\]""", setup_py, re.S)
    assert block, "setup.py has no entry_points['console_scripts'] list"
    body = re.sub(r'(?m)^\s*#.*$', '', block.group(1))
    return re.findall(r"""[fFrRuU]*['"]\s*([\w.\-]+)\s*=""", body)


def _colcon() -> str:
    exe = Path(sys.executable).parent / 'colcon'
    if exe.is_file():
        return str(exe)
    found = shutil.which('colcon')
    assert found, (
        f'no colcon next to {sys.executable} nor on PATH (pip install colcon-common-extensions)'
    )
    return found


@pytest.fixture(scope='module')
def colcon_ws(tmp_path_factory):
    """Build the package once with colcon; returns (tmp dir, source dir, CompletedProcess)."""
    root = tmp_path_factory.mktemp('colcon')
    src = root / 'ws' / 'src' / PACKAGE
    files = _source_files()
    assert 'package.xml' in files and 'setup.py' in files, files
    for rel in files:
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest)
    (src / 'launch').mkdir(exist_ok=True)
    (src / 'config').mkdir(exist_ok=True)
    (src / 'launch' / PROBE_LAUNCH).write_text(
        'def generate_launch_description():\n    raise NotImplementedError\n')
    (src / 'config' / PROBE_CONFIG).write_text('probe:\n  ros__parameters: {}\n')

    env = {k: v for k, v in os.environ.items()
           if k not in ('AMENT_PREFIX_PATH', 'COLCON_PREFIX_PATH', 'CMAKE_PREFIX_PATH',
                        'COLCON_DEFAULTS_FILE', 'COLCON_LOG_PATH')}
    env['COLCON_HOME'] = str(root / 'colcon_home')
    cmd = [_colcon(), '--log-base', str(root / 'log'), 'build',
           '--base-paths', 'src',
           '--build-base', str(root / 'build'),
           '--install-base', str(root / 'install'),
           '--executor', 'sequential',
           '--event-handlers', 'console_cohesion+', 'desktop_notification-',
           'status-', 'terminal_title-']
    result = subprocess.run(cmd, cwd=root / 'ws', env=env, capture_output=True, text=True,
                            timeout=BUILD_TIMEOUT_SEC, stdin=subprocess.DEVNULL)
    return root, src, result


def _prefix(root: Path) -> Path:
    return root / 'install' / PACKAGE


def test_colcon_build_succeeds(colcon_ws):
    root, _, result = colcon_ws
    assert result.returncode == 0, f'colcon build failed:\n{result.stdout}\n{result.stderr}'
    assert f'Finished <<< {PACKAGE}' in result.stdout, result.stdout
    assert (root / 'install' / 'setup.bash').is_file()
    assert (root / 'install' / 'local_setup.bash').is_file()


def test_ament_index_and_package_xml(colcon_ws):
    root, src, result = colcon_ws
    assert result.returncode == 0, result.stderr
    prefix = _prefix(root)
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / PACKAGE).is_file()
    installed = prefix / 'share' / PACKAGE / 'package.xml'
    assert installed.is_file()
    assert installed.read_bytes() == (src / 'package.xml').read_bytes()
    # colcon recognised it as a ROS package of the right build type.
    assert (prefix / 'share' / 'colcon-core' / 'packages' / PACKAGE).is_file()


def test_launch_and_config_files_installed(colcon_ws):
    root, src, result = colcon_ws
    assert result.returncode == 0, result.stderr
    share = _prefix(root) / 'share' / PACKAGE
    data = sorted(glob.glob('launch/*.launch.py', root_dir=src) +
                  glob.glob('config/*.yaml', root_dir=src))
    assert f'launch/{PROBE_LAUNCH}' in data and f'config/{PROBE_CONFIG}' in data
    missing = [rel for rel in data if not (share / rel).is_file()]
    assert not missing, f'not installed under {share}: {missing}'
    for rel in data:
        assert (share / rel).read_bytes() == (src / rel).read_bytes(), rel


def test_console_scripts_installed(colcon_ws):
    root, src, result = colcon_ws
    assert result.returncode == 0, result.stderr
    names = _console_scripts((src / 'setup.py').read_text())
    assert names, 'setup.py declares no console_scripts'
    lib = _prefix(root) / 'lib' / PACKAGE
    assert lib.is_dir() and any(lib.iterdir()), f'{lib} missing or empty'
    for name in names:
        script = lib / name
        assert script.is_file(), f'console script {name!r} not in {lib}: {os.listdir(lib)}'
        assert os.access(script, os.X_OK), f'{script} is not executable'
    # Everything setuptools itself recorded as an entry point landed there too.
    entry_points = glob.glob(str(_prefix(root) / 'lib' / 'python3*' / 'site-packages' /
                                 f'{PACKAGE}-*.egg-info' / 'entry_points.txt'))
    assert len(entry_points) == 1, entry_points
    text = Path(entry_points[0]).read_text()
    section = text.split('[console_scripts]', 1)[1].split('\n[', 1)[0]
    recorded = re.findall(r'(?m)^\s*([\w.\-]+)\s*=', section)
    assert sorted(recorded) == sorted(names)


def test_python_packages_installed_and_sourceable(colcon_ws):
    root, src, result = colcon_ws
    assert result.returncode == 0, result.stderr
    sites = glob.glob(str(_prefix(root) / 'lib' / 'python3*' / 'site-packages'))
    assert len(sites) == 1, sites
    site = Path(sites[0])
    # Every Python package of the source tree (dir with __init__.py) is installed whole.
    for init in (src / PACKAGE).rglob('__init__.py'):
        pkg = init.parent.relative_to(src)
        for module in init.parent.glob('*.py'):
            assert (site / pkg / module.name).is_file(), f'{pkg / module.name} not installed'
    # Sourcing install/setup.bash puts the package on AMENT_PREFIX_PATH and PYTHONPATH
    # (find_spec only locates the package; it doesn't run its code).
    if shutil.which('bash') is None:
        pytest.skip('no bash')
    env = {k: v for k, v in os.environ.items()
           if k not in ('AMENT_PREFIX_PATH', 'COLCON_PREFIX_PATH', 'CMAKE_PREFIX_PATH')}
    probe = ('import importlib.util, os; '
             f"print(os.environ['AMENT_PREFIX_PATH']); "
             f"print(importlib.util.find_spec('{PACKAGE}').origin)")
    out = subprocess.run(
        ['bash', '-c', f'source "{root}/install/setup.bash" && exec "$0" -c "$1"',
         sys.executable, probe],
        cwd=root, env=env, capture_output=True, text=True, timeout=60,
        check=True).stdout.split('\n')
    assert str(_prefix(root)) in out[0].split(os.pathsep)
    assert Path(out[1]).resolve() == (site / PACKAGE / '__init__.py').resolve()
