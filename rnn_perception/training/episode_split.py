"""The by-episode stratified train/validation split the trainers share."""
from __future__ import annotations

from typing import List, Sequence, Tuple, TypeVar

import numpy as np
from sklearn.model_selection import train_test_split

from ..data.shards import DatasetError

T = TypeVar('T')


def split_by_episode(episodes: Sequence[T], labels: Sequence[bool], val_fraction: float,
                     seed: int) -> Tuple[List[T], List[T]]:
    """Train/validation split by episode, stratified by ``labels`` (hit, slipped) when both sides
    can hold two of each kind; raises ``DatasetError`` when too few episodes to split."""
    val_size = max(2, round(val_fraction * len(episodes)))
    if val_size > len(episodes) - 2:
        raise DatasetError(f'{len(episodes)} episodes are too few to split off a validation set')
    stratify = labels if min(sum(labels), len(labels) - sum(labels)) >= 2 else None
    train, val = train_test_split(np.arange(len(episodes)), test_size=val_size, stratify=stratify,
                                  random_state=seed)
    return [episodes[i] for i in train], [episodes[i] for i in val]
