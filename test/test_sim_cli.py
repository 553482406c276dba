"""``python -m sim dodgeball``: help, a real run, bad input (one line, non-zero, no leftovers)."""
import subprocess
import sys
from pathlib import Path

import pytest

from rnn_perception.data.dodgeball_dataset import load_dodgeball_dataset
from sim.__main__ import main
from sim.dodgeball.cli import OPTIONS

REPO = Path(__file__).resolve().parents[1]
SMALL = ['--episodes', '2', '--image-size', '16']


def run_main(argv, capsys):
    """Exit status and stderr lines of ``main(argv)``, argparse exits included."""
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err.splitlines()


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(['dodgeball', '--help'])
    assert exit_.value.code == 0
    help_text = ' '.join(capsys.readouterr().out.split())
    for option in OPTIONS:
        assert option.flag in help_text
    assert '(default: 30.0)' in help_text and '(default: mcap)' in help_text


def test_command_line_run_writes_dataset_bag_and_preview(tmp_path):
    out, bag, preview = tmp_path / 'data', tmp_path / 'bag', tmp_path / 'sheet.png'
    result = subprocess.run(
        [sys.executable, '-m', 'sim', 'dodgeball', *SMALL, '--seed', '3', '--out', str(out),
         '--bag', str(bag), '--storage', 'sqlite3', '--preview', str(preview)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert 'wrote 2 episodes' in result.stdout
    assert load_dodgeball_dataset(out).num_episodes == 2
    assert (bag / 'metadata.yaml').is_file()
    assert preview.read_bytes().startswith(b'\x89PNG')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bag', 'data', 'sheet.png']


def write_yaml(path, text):
    path.write_text(text)
    return str(path)


OUT = ['--out', '{tmp}/data']
BAD_INPUTS = {
    'negative episodes': ([*OUT, '--episodes', '-3'], 1, 'episodes must be at least 1'),
    'zero image size': ([*OUT, '--image-size', '0'], 1, 'image size must be between'),
    'zero fps': ([*OUT, '--fps', '0'], 1, 'fps must be positive'),
    'zero workers': ([*OUT, '--workers', '0'], 1, 'workers must be at least 1'),
    'not a number': ([*OUT, '--episodes', 'many'], 2, "invalid int value: 'many'"),
    'unknown storage': ([*OUT, '--bag', '{tmp}/bag', '--storage', 'zip'], 2,
                        "invalid choice: 'zip'"),
    'no output directory': ([], 1, 'no output directory'),
    'output under a file': (['--out', '{tmp}/file.txt/data'], 1, 'is not an existing directory'),
    'output exists': (['--out', '{tmp}/file.txt'], 1, 'already exists'),
    'bag exists': ([*OUT, '--bag', '{tmp}/file.txt'], 1, 'already exists'),
    'bag is the dataset': ([*OUT, '--bag', '{tmp}/data'], 1, 'paths must differ'),
    'missing config': ([*OUT, '--config', '{tmp}/nope.yaml'], 1, 'cannot read config'),
    'unknown config key': ([*OUT, '--config', '{tmp}/unknown.yaml'], 1,
                           'unknown parameter(s) in camera: zoom'),
    'config type': ([*OUT, '--config', '{tmp}/wrongtype.yaml'], 1,
                    'throw.distance_m must be a list'),
    'storage from config': ([*OUT, '--config', '{tmp}/storage.yaml'], 1,
                            "unknown bag storage 'zip'"),
    'bag resolution not WxH': ([*OUT, '--bag-resolution', '640by480'], 2,
                               "expected WIDTHxHEIGHT such as 640x480, got '640by480'"),
    'bag resolution too small': ([*OUT, '--bag-resolution', '640x4'], 1,
                                 'bag_camera.resolution sides must be between 8 and 4096'),
    'unknown bag image': ([*OUT, '--bag-image', 'h264'], 2, "invalid choice: 'h264'"),
    'jpeg quality': ([*OUT, '--bag-jpeg-quality', '0'], 1, 'jpeg_quality must be in 1..100'),
}


@pytest.mark.parametrize('argv, status, message', BAD_INPUTS.values(), ids=BAD_INPUTS)
def test_bad_input_is_one_clear_line_and_leaves_nothing(tmp_path, capsys, argv, status, message):
    (tmp_path / 'file.txt').write_text('not a directory')
    (tmp_path / 'unknown.yaml').write_text('camera: {zoom: 2}\n')
    (tmp_path / 'wrongtype.yaml').write_text('throw: {distance_m: 3}\n')
    (tmp_path / 'storage.yaml').write_text('output: {storage: zip, bag: x}\n')
    before = sorted(tmp_path.iterdir())
    argv = [arg.replace('{tmp}', str(tmp_path)) for arg in argv]
    got_status, lines = run_main(['dodgeball', *SMALL, *argv], capsys)
    assert got_status == status
    assert len(lines) == 1 and lines[0].startswith('sim: error: ') and message in lines[0]
    assert sorted(tmp_path.iterdir()) == before
