"""Simulator configuration: YAML defaults, a user YAML file and command-line flags, in that order.

Each simulator describes its parameters as frozen dataclasses; :func:`from_mapping` builds
them from the merged mapping with type checks and names the offending key on error.
:class:`ConfigOption` maps a command-line flag onto a key, so ``--help`` and the overrides
come from one table.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from sim.errors import SimError


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
    type: type
    help: str
    choices: Sequence[str] | None = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        """argparse destination name."""
        return self.flag.lstrip('-').replace('-', '_')


def add_config_options(parser: argparse.ArgumentParser, options: Sequence[ConfigOption],
                       defaults: dict) -> None:
    """Add ``options`` to ``parser``; each help text ends with the default from ``defaults``."""
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
