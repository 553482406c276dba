"""Simulator configuration: YAML defaults, a user YAML file and command-line flags, in that order.

Each simulator describes its parameters as frozen dataclasses; :func:`from_mapping` builds
them from the merged mapping with type checks and names the offending key on error, and
:func:`load_config` does the whole defaults → file → flags chain. :class:`ConfigOption` maps
a command-line flag onto a key, so ``--help`` and the overrides come from one table;
:func:`run_options` are the flags every simulator has (episodes, seed, outputs, workers).
:class:`SimulatorConfig` is what every simulator's config has (counts, seed, the
:class:`OutputConfig` section) with their checks; a simulator's config extends it.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from rnn_perception.data.bags import STORAGE_PLUGINS
from sim.errors import SimError
from sim.sharding import parse_shard


def load_yaml(path: str | Path) -> dict:
    """The mapping at the top of a YAML file."""
    try:
        text = Path(path).read_text(encoding='utf-8')
    except OSError as error:
        raise SimError(f'cannot read config {path}: {error.strerror}') from error
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SimError(f'config {path} is not valid YAML: {error}'.replace('\n', ' ')) from error
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise SimError(f'config {path} must hold a mapping of parameters')
    return mapping


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` with ``override``'s keys replaced, recursing into nested mappings."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def from_mapping(cls: type, mapping: object, where: str = ''):
    """An instance of dataclass ``cls`` from ``mapping``; every field required, no extras."""
    section = where or 'config'
    if not isinstance(mapping, dict):
        raise SimError(f'{section} must be a mapping, got {mapping!r}')
    hints = typing.get_type_hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise SimError(f'unknown parameter(s) in {section}: {", ".join(map(str, unknown))}')
    missing = [name for name in names if name not in mapping]
    if missing:
        raise SimError(f'missing parameter(s) in {section}: {", ".join(missing)}')
    return cls(**{name: _convert(mapping[name], hints[name], f'{where}.{name}' if where else name)
                  for name in names})


def _convert(value: object, hint: object, where: str):
    """``value`` checked against type ``hint`` (scalar, optional, tuple or dataclass)."""
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _convert(value, inner, where)
    if origin is tuple:
        items = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            raise SimError(f'{where} must be a list of {len(items)} values, got {value!r}')
        return tuple(_convert(item, item_hint, where) for item, item_hint in zip(value, items))
    accepted = {float: (int, float), int: (int,), bool: (bool,), str: (str,)}[hint]
    if not isinstance(value, accepted) or (hint is not bool and isinstance(value, bool)):
        raise SimError(f'{where} must be of type {hint.__name__}, got {value!r}')
    return hint(value)


@dataclass(frozen=True)
class ConfigOption:
    """A command-line flag that overrides the config key at ``path``."""

    flag: str
    path: tuple[str, ...]
    type: typing.Callable[[str], typing.Any]   # parses the flag: int, float, str, bool or a parser
    help: str
    choices: Sequence[str] | None = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        """argparse destination name."""
        return self.flag.lstrip('-').replace('-', '_')


def add_simulator(
    subcommands,
    name: str,
    help_: str,
    description: str,
    defaults_path: Path,
    options: Sequence[ConfigOption],
    run: typing.Callable[[argparse.Namespace], None],
) -> None:
    """Add simulator ``name`` to ``python -m sim``: ``--config YAML``, ``--shard K/N`` and
    ``options`` (each help text ends with its default from ``defaults_path``); ``run(args)``
    generates. ``--shard`` is no config key: it picks which part of the run this process makes,
    not what an episode is (:mod:`sim.sharding`)."""
    parser = subcommands.add_parser(name, help=help_, description=description,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', metavar='YAML',
                        help=f'parameters overriding the defaults in config/{defaults_path.name}')
    parser.add_argument('--shard', type=parse_shard, metavar='K/N',
                        help='make only part K of N (1 <= K <= N) of the run: its K-th '
                             'contiguous block of episode indices, each episode exactly as the '
                             'whole run makes it; give the parts to train/eval --data together '
                             '(default: the whole run)')
    parser.set_defaults(run=run)
    defaults = load_yaml(defaults_path)
    for option in options:
        help_text = f'{option.help} (default: {get_path(defaults, option.path)})'
        if option.type is bool:
            parser.add_argument(option.flag, dest=option.dest, help=help_text,
                                action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(option.flag, dest=option.dest, help=help_text, type=option.type,
                                choices=option.choices, default=None, metavar=option.metavar)


def overrides_from_args(args: argparse.Namespace, options: Sequence[ConfigOption]) -> dict:
    """Nested mapping of the options given on the command line."""
    overrides = {}
    for option in options:
        value = getattr(args, option.dest)
        if value is not None:
            *sections, key = option.path
            node = overrides
            for section in sections:
                node = node.setdefault(section, {})
            node[key] = value
    return overrides


def get_path(mapping: dict, path: Sequence[str]):
    """The value at a key path of nested mappings."""
    for key in path:
        mapping = mapping[key]
    return mapping


@dataclass(frozen=True)
class OutputConfig:
    """Where results go; none of it changes the dataset's content."""

    out: str | None
    bag: str | None
    storage: str
    bag_episode_gap_s: float
    preview: str | None


@dataclass(frozen=True)
class SimulatorConfig:
    """What every simulator's config has; each simulator's config adds its sections and extends
    :meth:`_checks` with theirs."""

    episodes: int
    seed: int
    workers: int
    episodes_per_shard: int
    output: OutputConfig

    def dataset_parameters(self) -> dict:
        """The parameters that shape the dataset's bytes (for its manifest)."""
        parameters = dataclasses.asdict(self)
        del parameters['output'], parameters['workers']
        return parameters

    def validate(self) -> None:
        """Raise SimError naming the first nonsensical parameter."""
        for ok, message in self._checks():
            if not ok:
                raise SimError(message)

    def _checks(self) -> Iterator[tuple[bool, str]]:
        """(condition, message if it fails) for every constraint."""
        output = self.output
        yield self.episodes >= 1, f'episodes must be at least 1, got {self.episodes}'
        yield self.seed >= 0, f'seed must be non-negative, got {self.seed}'
        yield self.workers >= 1, f'workers must be at least 1, got {self.workers}'
        yield self.episodes_per_shard >= 1, (
            f'episodes_per_shard must be at least 1, got {self.episodes_per_shard}')
        yield output.storage in STORAGE_PLUGINS, (
            f'unknown bag storage {output.storage!r} (choose from {", ".join(STORAGE_PLUGINS)})')
        paths = [path for path in (output.out, output.bag, output.preview) if path]
        yield len({os.path.abspath(path) for path in paths}) == len(paths), (
            'the dataset, bag and preview paths must differ')
        yield output.bag_episode_gap_s > 0, (
            f'bag_episode_gap_s must be positive, got {output.bag_episode_gap_s}')


def load_config(cls: type, defaults_path: Path, config_path: str | Path | None = None,
                overrides: dict | None = None):
    """``cls`` from the defaults file, then the YAML file at ``config_path``, then
    ``overrides`` (nested mappings); validated with its ``validate()``."""
    mapping = load_yaml(defaults_path)
    if config_path is not None:
        mapping = deep_merge(mapping, load_yaml(config_path))
    mapping = deep_merge(mapping, overrides or {})
    config = from_mapping(cls, mapping)
    config.validate()
    return config


def run_options(episode: str, bag_content: str, preview_content: str) -> tuple[ConfigOption, ...]:
    """The flags every simulator has; ``episode`` names what one episode is ("throws"),
    ``bag_content`` and ``preview_content`` say what the bag and the preview hold."""
    return (
        ConfigOption('--episodes', ('episodes',), int, f'number of {episode} to simulate',
                     metavar='N'),
        ConfigOption('--seed', ('seed',), int,
                     'master seed; the same seed gives a byte-identical dataset for any '
                     '--workers', metavar='S'),
        ConfigOption('--out', ('output', 'out'), str,
                     'dataset directory to create; must not exist yet (required)', metavar='DIR'),
        ConfigOption('--workers', ('workers',), int, 'simulation processes', metavar='N'),
        ConfigOption('--bag', ('output', 'bag'), str,
                     f'also write a rosbag2 ({bag_content}) to this new directory',
                     metavar='PATH'),
        ConfigOption('--storage', ('output', 'storage'), str, 'bag storage plugin',
                     choices=tuple(STORAGE_PLUGINS)),
        ConfigOption('--bag-gap', ('output', 'bag_episode_gap_s'), float,
                     'sim-clock gap between episodes in the bag', metavar='SECONDS'),
        ConfigOption('--preview', ('output', 'preview'), str,
                     f'also write a {preview_content} PNG', metavar='PNG'),
        ConfigOption('--episodes-per-shard', ('episodes_per_shard',), int,
                     'whole episodes per shard_XXXXX.npz', metavar='N'),
    )
