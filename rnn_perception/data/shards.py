"""What every simulator dataset shares: sharded episodes, a manifest, a checking reader.

A dataset is a directory of compressed numpy shards and a ``manifest.json`` written last::

    DIR/manifest.json        written last: a directory without it is incomplete
    DIR/shard_00000.npz      whole episodes, in episode order (zip of .npy, deflated)
    DIR/shard_00001.npz      ...

Each shard stores its episodes one after another as flat arrays: per-frame arrays (first axis
= the N frames of the shard, a frame being one sample of the simulated sensor) and
per-episode arrays (first axis = its E episodes), plus three bookkeeping arrays every dataset
kind has:

=====================  ==============  =======================================================
episode_index          int64 N         global episode number of the frame
frame_index            int32 N         frame number within its episode (0, 1, ...)
episode_offsets        int64 E+1       episode e is frames ``[offsets[e], offsets[e+1])``
=====================  ==============  =======================================================

Shards have a fixed zip timestamp, so the same episodes give byte-identical files. The
manifest always holds ``schema_version``, ``kind``, ``num_episodes``, ``num_frames`` and
``shards`` (``file``, ``first_episode``, ``episodes``, ``frames`` and whatever a kind adds);
each kind (``dodgeball_dataset``, ``tactile_dataset``) documents its own arrays and keys. A
directory made by one of several machines (``python -m sim ... --shard K/N``) also holds
``shard``: ``index`` K, ``count`` N and ``episodes`` [start, stop), its block of the run.

**Several directories, one dataset.** :meth:`ShardedDataset.open` takes one directory or
several: the parts of one run (``--shard 1/N`` .. ``N/N``), or a run and a later block of the
same seed. They are read as one dataset in episode order, exactly the directory one machine
would have written. Parts must come from the same simulator settings: every manifest key but
the counts, totals and ``shard`` must be equal, and so must ``parameters`` but for
:data:`LAYOUT_PARAMETERS` (how many episodes were asked for and how they were cut into files,
which no episode depends on). No episode index may be in two of them: the same seed and index
is the same episode, so a second copy would weigh it twice and leak it across a train /
validation split. Gaps are allowed (a held-out block for evaluation is one).

numpy and json only: training and runtime code load datasets without the simulators.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

MANIFEST_NAME = 'manifest.json'

# Parameters that say how many episodes a run asked for and how they were cut into shard files,
# not what an episode is (episode i depends on the seed, i and the other parameters alone).
LAYOUT_PARAMETERS = ('episodes', 'episodes_per_shard')
# Manifest keys about a directory's own episodes: recomputed, not compared, for several.
PART_KEYS = ('num_episodes', 'num_frames', 'shards', 'shard')

# A fixed zip timestamp makes shards byte-identical between runs (np.savez stamps "now").
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


class DatasetError(Exception):
    """A dataset is missing, incomplete, corrupt or not of the expected kind and schema."""


def shard_file_name(shard_number: int) -> str:
    """File name of shard ``shard_number``."""
    return f'shard_{shard_number:05d}.npz'


def shard_arrays(episodes: Sequence, frame_dtypes: Mapping[str, type],
                 episode_dtypes: Mapping[str, type]) -> dict[str, np.ndarray]:
    """Flatten episodes (objects with ``index``, ``num_frames`` and the named fields).

    A per-frame field that is None in the first episode is optional and left out.
    """
    lengths = [episode.num_frames for episode in episodes]
    arrays = {
        'episode_index': np.repeat([e.index for e in episodes], lengths).astype(np.int64),
        'frame_index': np.concatenate([np.arange(n, dtype=np.int32) for n in lengths]),
        'episode_offsets': np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
    }
    for name, dtype in frame_dtypes.items():
        if getattr(episodes[0], name) is not None:
            arrays[name] = np.concatenate([getattr(e, name) for e in episodes]).astype(dtype)
    for name, dtype in episode_dtypes.items():
        arrays[name] = np.array([getattr(e, name) for e in episodes], dtype=dtype)
    return arrays


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as a deflated .npz whose bytes depend on the arrays alone."""
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f'{name}.npy', date_time=_ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, 'w', force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def shard_entry(path: Path, arrays: Mapping[str, np.ndarray], first_episode: int) -> dict:
    """The manifest entry of a shard written from ``arrays``."""
    offsets = arrays['episode_offsets']
    return {'file': path.name, 'first_episode': int(first_episode),
            'episodes': len(offsets) - 1, 'frames': int(offsets[-1])}


def manifest_counts(shards: Sequence[dict]) -> dict:
    """``num_episodes`` and ``num_frames`` of written ``shards``."""
    return {'num_episodes': sum(shard['episodes'] for shard in shards),
            'num_frames': sum(shard['frames'] for shard in shards)}


def write_manifest(root: Path, manifest: dict) -> None:
    """Write ``manifest.json``; call it last, it is what marks the dataset complete."""
    text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
    (root / MANIFEST_NAME).write_text(text + '\n', encoding='utf-8')


def read_manifest(root: str | Path, kind: str, schema_version: int) -> tuple[Path, dict]:
    """``(root, manifest)`` after checking kind, schema, counts and shard files.

    Raises:
        DatasetError: no manifest (missing, or an interrupted generation), another schema
            version or kind, missing shards, or counts that do not add up.
    """
    part = read_part(root, kind, schema_version)
    return part.root, part.manifest


class DatasetPart(NamedTuple):
    """One checked dataset directory: where, its manifest, the SHA-256 of its manifest file."""

    root: Path
    manifest: dict
    manifest_sha256: str


def read_part(root: str | Path, kind: str, schema_version: int) -> DatasetPart:
    """One directory, checked as :func:`read_manifest` says."""
    root = Path(root)
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise DatasetError(f'{root}: no {MANIFEST_NAME}; not a dataset, or an incomplete one')
    try:
        raw = manifest_path.read_bytes()
        manifest = json.loads(raw.decode('utf-8'))
    except (OSError, ValueError) as error:
        raise DatasetError(f'{manifest_path}: unreadable manifest ({error})') from error
    if manifest.get('kind') != kind or manifest.get('schema_version') != schema_version:
        raise DatasetError(
            f'{root}: expected a {kind} dataset of schema version {schema_version}, found '
            f'kind {manifest.get("kind")!r} version {manifest.get("schema_version")!r}')
    shards = manifest.get('shards', [])
    for field, count_key in (('episodes', 'num_episodes'), ('frames', 'num_frames')):
        if sum(shard[field] for shard in shards) != manifest.get(count_key):
            raise DatasetError(f'{root}: shard {field} do not add up to {count_key}')
    missing = [shard['file'] for shard in shards if not (root / shard['file']).is_file()]
    if missing:
        raise DatasetError(f'{root}: missing shard files {", ".join(missing)}')
    return DatasetPart(root, manifest, hashlib.sha256(raw).hexdigest())


def load_shard(root: Path, entry: dict, names: Optional[Sequence[str]] = None
               ) -> dict[str, np.ndarray]:
    """Read one shard, all its arrays or only ``names`` (with ``episode_offsets`` and
    ``episode_index``; an npz reads its members lazily, so the frames of an index read are
    never decompressed), and check it holds what its manifest entry says."""
    path = root / entry['file']
    try:
        with np.load(path, allow_pickle=False) as archive:
            wanted = archive.files if names is None else ('episode_offsets', 'episode_index',
                                                          *names)
            arrays = {name: archive[name] for name in wanted}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise DatasetError(f'{path}: unreadable shard ({error})') from error
    expected = {'episode_offsets': entry['episodes'] + 1, 'episode_index': entry['frames']}
    for name, length in expected.items():
        if name not in arrays or len(arrays[name]) != length:
            raise DatasetError(f'{path}: {name} does not match the manifest (corrupt shard?)')
    if arrays['episode_offsets'][-1] != entry['frames']:
        raise DatasetError(f'{path}: episode offsets do not cover its frames (corrupt shard?)')
    return arrays


def episode_fields(arrays: Mapping[str, np.ndarray], e: int, frame_names: Sequence[str],
                   episode_names: Sequence[str]) -> dict:
    """Episode ``e`` of a shard's flat arrays as keyword arguments (with ``index``); a per-frame
    name missing from the shard (an optional field) comes back as None."""
    start, stop = arrays['episode_offsets'][e:e + 2]
    per_frame = {name: arrays[name][start:stop] if name in arrays else None
                 for name in frame_names}
    per_episode = {name: arrays[name][e].item() for name in episode_names}
    return {'index': int(arrays['episode_index'][start]), **per_frame, **per_episode}


def split_episodes(arrays: Mapping[str, np.ndarray], frame_names: Sequence[str],
                   episode_names: Sequence[str]) -> Iterator[dict]:
    """Cut a shard's flat arrays back into per-episode keyword arguments (with ``index``).

    A per-frame name missing from the shard (an optional field) comes back as None.
    """
    for e in range(len(arrays['episode_offsets']) - 1):
        yield episode_fields(arrays, e, frame_names, episode_names)


class ShardedDataset:
    """A verified dataset of one directory or several (see the module docstring); shards are read
    lazily, one at a time.

    Subclasses set :attr:`KIND`, :attr:`SCHEMA_VERSION`, :attr:`FRAME_DTYPES`,
    :attr:`EPISODE_DTYPES`, :meth:`make_episode` and :meth:`totals`.
    """

    KIND = ''
    SCHEMA_VERSION = 0
    FRAME_DTYPES: Mapping[str, type] = {}
    EPISODE_DTYPES: Mapping[str, type] = {}

    def __init__(self, parts: Sequence[DatasetPart]):
        self.parts = sorted(parts, key=_first_episode)
        self.root = self.parts[0].root
        self.shard_files = [(part.root, entry) for part in self.parts
                            for entry in part.manifest['shards']]
        self.manifest = self.parts[0].manifest if len(parts) == 1 else self._union_manifest()

    @classmethod
    def open(cls, roots: str | os.PathLike | Sequence[str | os.PathLike]):
        """The dataset in directory ``roots``, or in several directories read as one.

        Raises:
            DatasetError: a directory is not a complete dataset of this kind (see
                :func:`read_manifest`), is given twice, was made with other simulator settings
                than the first, or holds an episode index another one holds too.
        """
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        if not roots:
            raise DatasetError('no dataset directory given')
        parts = [read_part(root, cls.KIND, cls.SCHEMA_VERSION) for root in roots]
        check_union(parts, cls.totals)
        return cls(parts)

    @staticmethod
    def totals(shards: Sequence[dict]) -> dict:
        """The manifest keys a kind totals over its shard entries (hits, slips)."""
        return {}

    def _union_manifest(self) -> dict:
        """The manifest one machine would have written for all the parts' episodes."""
        first = self.parts[0].manifest
        shards = [entry for _, entry in self.shard_files]
        manifest = {key: value for key, value in first.items() if key not in PART_KEYS}
        return {**manifest, 'shards': shards, **manifest_counts(shards), **self.totals(shards)}

    @property
    def name(self) -> str:
        """The directory, or the directories joined by ``+``: for messages and reports."""
        return ' + '.join(str(part.root) for part in self.parts)

    @property
    def manifest_sha256(self) -> str:
        """The dataset's identity: the SHA-256 of its manifest file; for several directories,
        the SHA-256 of their manifests' hashes, one a line, in episode order."""
        if len(self.parts) == 1:
            return self.parts[0].manifest_sha256
        lines = ''.join(f'{part.manifest_sha256}\n' for part in self.parts)
        return hashlib.sha256(lines.encode('ascii')).hexdigest()

    @property
    def num_episodes(self) -> int:
        """Number of episodes."""
        return self.manifest['num_episodes']

    @property
    def num_frames(self) -> int:
        """Number of frames (sensor samples) over all episodes."""
        return self.manifest['num_frames']

    def __len__(self) -> int:
        return self.num_episodes

    def make_episode(self, fields: dict):
        """The episode object of one episode's fields (see :func:`split_episodes`)."""
        raise NotImplementedError

    def episodes(self) -> Iterator:
        """All episodes in order."""
        for root, shard in self.shard_files:
            for fields in split_episodes(load_shard(root, shard), self.FRAME_DTYPES,
                                         self.EPISODE_DTYPES):
                yield self.make_episode(fields)

    def arrays(self) -> dict[str, np.ndarray]:
        """All shards concatenated (``episode_offsets`` then index the whole dataset)."""
        shards = [load_shard(root, shard) for root, shard in self.shard_files]
        merged = {name: np.concatenate([shard[name] for shard in shards])
                  for name in shards[0] if name != 'episode_offsets'}
        lengths = np.concatenate([np.diff(shard['episode_offsets']) for shard in shards])
        merged['episode_offsets'] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return merged


def _first_episode(part: DatasetPart) -> int:
    shards = part.manifest['shards']
    return min((shard['first_episode'] for shard in shards), default=0)


def settings(manifest: dict, totals) -> dict:
    """What must be equal for two directories to be parts of one dataset: the manifest but its
    counts, ``totals(shards)``'s keys and ``shard``, with ``parameters`` but
    :data:`LAYOUT_PARAMETERS`."""
    ignored = {*PART_KEYS, *totals(manifest['shards'])}
    kept = {key: value for key, value in manifest.items() if key not in ignored}
    if isinstance(kept.get('parameters'), dict):
        kept['parameters'] = {key: value for key, value in kept['parameters'].items()
                              if key not in LAYOUT_PARAMETERS}
    return kept


def first_difference(a: object, b: object, path: str = '') -> tuple[str, object, object] | None:
    """The first key path (``parameters.seed``) at which nested mappings differ, and the two
    values there; None when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = first_difference(a.get(key), b.get(key), f'{path}.{key}' if path else key)
            if found is not None:
                return found
        return None
    return None if a == b else (path, a, b)


def check_union(parts: Sequence[DatasetPart], totals) -> None:
    """Raise DatasetError unless ``parts`` can be read as one dataset (module docstring)."""
    seen = {}
    for part in parts:
        resolved = part.root.resolve()
        if resolved in seen:
            raise DatasetError(f'{part.root}: given twice (also as {seen[resolved]})')
        seen[resolved] = part.root
    reference = settings(parts[0].manifest, totals)
    for part in parts[1:]:
        difference = first_difference(reference, settings(part.manifest, totals))
        if difference is not None:
            key, first, other = difference
            raise DatasetError(
                f'{part.root}: made with other simulator settings than {parts[0].root} ({key} '
                f'{other!r}, not {first!r}); only parts of one run (same seed and parameters) '
                'make one dataset')
    blocks = sorted((shard['first_episode'], shard['first_episode'] + shard['episodes'],
                     str(part.root)) for part in parts for shard in part.manifest['shards'])
    for (start, stop, root), (next_start, _, next_root) in zip(blocks, blocks[1:]):
        if next_start < stop:
            raise DatasetError(
                f'episodes {next_start}..{stop - 1} are in both {root} and {next_root}; each '
                'episode index may come from one directory only')
