"""How the collision model holds up against what real cameras do: one row per condition, each on
the same fresh throws, AUROC, accuracy and median lead time at the weights' own threshold.

Conditions: the plain test set as rendered; the same frames through one camera effect each
(``rnn_perception.data.sensor_effects``: JPEG quality 90/50/20, noise sigma 5/15, motion blur,
brightness x0.5/x1.5, a mono8 sensor); optional datasets (e.g. the held-out randomisation preset)
and bags (e.g. the same throws rendered at 640x480 or 1280x720, JPEG), each named on the command
line. Writes ``OUT/robustness.json``, ``OUT/robustness.md`` (the README table) and
``OUT/robustness.png`` (a plot of it).

    .venv/bin/python benchmarks/robustness_collision.py --weights W --data TEST_DIR \\
        [--dataset NAME=DIR ...] [--bag NAME=BAG ...] --out DIR
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import torch
from tqdm import tqdm

from arguments import named_paths  # this script's folder is on sys.path
from rnn_perception.data.dodgeball_dataset import load_dodgeball_dataset
from rnn_perception.data.sensor_effects import SensorEffects
from rnn_perception.evaluation.collision import dataset_traces, evaluate_bag
from rnn_perception.evaluation.collision_metrics import collision_metrics
from rnn_perception.files import atomic_path, write_text_atomic
from rnn_perception.models.collision import load_collision_model, model_threshold

EFFECTS: Dict[str, SensorEffects] = {
    'JPEG quality 90': SensorEffects(jpeg_quality=90),
    'JPEG quality 50': SensorEffects(jpeg_quality=50),
    'JPEG quality 20': SensorEffects(jpeg_quality=20),
    'noise sigma 5': SensorEffects(noise_sigma=5.0),
    'noise sigma 15': SensorEffects(noise_sigma=15.0),
    'motion blur 5 px': SensorEffects(blur_px=5, blur_angle_deg=30.0),
    'brightness x0.5': SensorEffects(gain=0.5),
    'brightness x1.5': SensorEffects(gain=1.5),
    'mono8': SensorEffects(mono=True),
}
COLUMNS = ('auroc', 'accuracy', 'lead_time_median_s', 'false_alarm_rate')


def row(metrics: Dict) -> Dict:
    return {key: metrics[key] for key in (*COLUMNS, 'episodes', 'hits')}


def markdown(rows: Dict[str, Dict]) -> str:
    def number(value, form):
        return '-' if value is None else format(value, form)

    lines = ['| condition | AUROC | accuracy | median lead (s) | false alarms |',
             '| --- | --- | --- | --- | --- |']
    lines += [f"| {name} | {number(r['auroc'], '.4f')} | {number(r['accuracy'], '.2%')} | "
              f"{number(r['lead_time_median_s'], '.3f')} | "
              f"{number(r['false_alarm_rate'], '.1%')} |" for name, r in rows.items()]
    return '\n'.join(lines) + '\n'


def plot(rows: Dict[str, Dict], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = list(rows)
    figure, axes = plt.subplots(1, 3, figsize=(13, 0.35 * len(names) + 1.5), sharey=True)
    positions = np.arange(len(names))
    for axis, (key, title) in zip(axes, (('auroc', 'AUROC'), ('accuracy', 'accuracy'),
                                         ('lead_time_median_s', 'median lead time (s)'))):
        values = [rows[name][key] or 0.0 for name in names]
        axis.barh(positions, values, color=['#4477aa' if i else '#228833'
                                            for i in range(len(names))])
        axis.set_title(title)
        axis.axvline(values[0], color='#228833', linewidth=1, linestyle='--')
        if key != 'lead_time_median_s':
            axis.set_xlim(min(0.8, min(values) - 0.02), 1.0)
    axes[0].set_yticks(positions, names)
    axes[0].invert_yaxis()
    figure.suptitle('collision model against camera effects (same throws; dashed: plain)')
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format='png')
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', required=True, help='collision weights (.safetensors)')
    parser.add_argument('--data', required=True, type=Path, help='the plain test dataset')
    parser.add_argument('--dataset', action='append', default=[], metavar='NAME=DIR',
                        help='another dataset to evaluate as a row (repeatable)')
    parser.add_argument('--bag', action='append', default=[], metavar='NAME=BAG',
                        help='a bag to evaluate as a row, stepped as the node steps it')
    parser.add_argument('--seed', type=int, default=0, help='noise seed (default 0)')
    parser.add_argument('--out', required=True, type=Path, help='directory for the results')
    args = parser.parse_args()
    datasets = named_paths(args.dataset, '--dataset', parser)
    bags = named_paths(args.bag, '--bag', parser)

    device = torch.device('cpu')
    model, metadata = load_collision_model(args.weights, device)
    threshold = model_threshold(metadata)
    episodes = list(load_dodgeball_dataset(args.data).episodes())
    rows: Dict[str, Dict] = {}
    conditions = [('plain', None), *EFFECTS.items()]
    for name, effects in tqdm(conditions, desc='camera effects', unit='condition'):
        rng = np.random.default_rng(args.seed)
        changed = episodes if effects is None else [
            dataclasses.replace(episode, frames=effects.apply(episode.frames, rng))
            for episode in episodes]
        rows[name] = row(collision_metrics(dataset_traces(model, changed, device), threshold))
    for name, path in datasets:
        data = load_dodgeball_dataset(path).episodes()
        rows[name] = row(collision_metrics(dataset_traces(model, data, device), threshold))
    for name, path in tqdm(bags, desc='bags', unit='bag', disable=not bags):
        rows[name] = row(evaluate_bag(args.weights, path, threshold=threshold)[1])

    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows)
    write_text_atomic(args.out / 'robustness.json', json.dumps(
        {'weights': str(args.weights), 'data': str(args.data), 'threshold': threshold,
         'rows': rows}, indent=1) + '\n')
    write_text_atomic(args.out / 'robustness.md', table)
    plot(rows, args.out / 'robustness.png')
    print(table)
    print(f'wrote {args.out / "robustness.md"}, .json and .png')
    return 0


if __name__ == '__main__':
    sys.exit(main())
