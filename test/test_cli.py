"""The command-line convention every command keeps (rnn_perception/cli.py): one line
``<command>: error: ...``, exit status 2 for a bad command line, 1 for bad input."""
import pytest

from rnn_perception.commands import COMMANDS, main
from sim.__main__ import main as sim_main

# every command, as typed after ``python -m rnn_perception``, and the name its errors carry
EVERY_COMMAND = [
    ([name], name) if not isinstance(entry, dict) else ([name, target], f'{name} {target}')
    for name, entry in COMMANDS.items()
    for target in (entry if isinstance(entry, dict) else [None])
]


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.err.count('\n') == 1 and 'Traceback' not in captured.err, captured.err
    return captured.err.strip()


@pytest.mark.parametrize('words,name', EVERY_COMMAND, ids=[name for _, name in EVERY_COMMAND])
def test_a_bad_option_is_one_line_and_exit_status_2(capsys, words, name):
    assert main([*words, '--no-such-option']) == 2
    line = one_error_line(capsys)
    assert line.startswith(f'{name}: error: ') and line.endswith('(see --help)'), line
    assert '--no-such-option' in line or 'arguments are required' in line, line


@pytest.mark.parametrize('words,name', EVERY_COMMAND, ids=[name for _, name in EVERY_COMMAND])
def test_help_explains_and_exits_0(capsys, words, name):
    """argparse expands ``%`` in help strings: a literal one (``80% of``) must be doubled, or
    ``--help`` itself fails with a traceback."""
    with pytest.raises(SystemExit) as stopped:
        main([*words, '--help'])
    assert stopped.value.code == 0
    captured = capsys.readouterr()
    assert captured.out.startswith('usage: ') and 'options:' in captured.out, captured.out
    assert captured.err == ''


@pytest.mark.parametrize(
    'argv,line',
    [
        (
            ['fly'],
            "rnn_perception: error: unknown command 'fly'; "
            'choose from demo, zoo, train, eval, export, play, bringup',
        ),
        (['train'], 'rnn_perception train: error: choose what to train: collision, tactile'),
        (
            ['eval', 'weather'],
            'rnn_perception eval: error: choose what to eval: collision, tactile',
        ),
    ],
)
def test_unknown_commands_are_one_line_and_exit_status_2(capsys, argv, line):
    assert main(argv) == 2
    assert one_error_line(capsys) == line


def test_bad_input_is_exit_status_1(tmp_path, capsys):
    assert main(['play', '--bag', str(tmp_path / 'no_bag')]) == 1
    assert one_error_line(capsys).startswith('play: error: ')
    assert main(['bringup', 'dodgeball', '--params', str(tmp_path / 'no.yaml')]) == 1
    assert one_error_line(capsys).startswith('bringup dodgeball: error: ')


def test_sim_keeps_the_same_convention(tmp_path, capsys):
    assert sim_main(['dodgeball', '--episodes', 'many', '--out', str(tmp_path)]) == 2
    assert one_error_line(capsys).startswith('sim: error: argument --episodes')
    assert sim_main(['juggling']) == 2
    assert one_error_line(capsys).startswith('sim: error: argument SIMULATOR: invalid choice')
