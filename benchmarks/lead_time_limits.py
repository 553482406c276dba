"""How early could anyone warn? The shipped collision model against the physical limit (a
trajectory oracle given the ball's true positions) and a classical baseline (ball detection,
depth from apparent size, a ballistic fit), all on the same fresh throws (issue 17).

Simulates ``--episodes`` throws of ``--seed`` (never used for training) twice, as the plain scene
and as the held-out randomisation (the same throws: the randomisation draws from its own random
stream), and scores each method with the model's metrics (``collision_metrics``):

- **model**: the shipped default weights, and the shipped randomised weights, each at its own
  threshold;
- **oracle**: :mod:`rnn_perception.evaluation.trajectory_oracle`, the ball's true positions
  where the camera sees it plus Gaussian noise (``--oracle-noise``, metres per axis: the first
  on both scenes, the others on the plain one);
- **baseline**: :mod:`rnn_perception.evaluation.classical_baseline`, from the camera frames; on
  the plain scene also with perfect detection (the true image centre and size).

The oracle and the baseline have no trained threshold: each is set at the lowest threshold whose
false-alarm rate is at most the default model's on the plain scene (the longest lead times that
false-alarm rate allows; chosen on these throws, which can only flatter them). The JSON also
gives each one's lead time at the lowest threshold that reaches the default model's accuracy.
Writes ``OUT/lead_time_limits.json``, ``.md`` (the README tables) and one cumulative lead-time
plot per scene, ``OUT/lead_time_plain.png`` and ``OUT/lead_time_held_out.png``.

    .venv/bin/python benchmarks/lead_time_limits.py [--episodes 400] [--seed 20261207]
        [--oracle-noise 0.01 0.03 0.1] [--out DIR] [--json]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `sim` lives at the repo root

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rnn_perception.data.dodgeball_dataset import load_dodgeball_dataset  # noqa: E402
from rnn_perception.evaluation.classical_baseline import (  # noqa: E402
    baseline_traces, BaselineSettings)
from rnn_perception.evaluation.collision import dataset_traces  # noqa: E402
from rnn_perception.evaluation.collision_metrics import (  # noqa: E402
    collision_metrics, EpisodeTrace, lead_times_s, threshold_for_accuracy,
    threshold_for_false_alarm_rate)
from rnn_perception.evaluation.collision_plots import plot_lead_time_curves  # noqa: E402
from rnn_perception.evaluation.dodgeball_scene import DodgeballScene  # noqa: E402
from rnn_perception.evaluation.trajectory_oracle import (  # noqa: E402
    oracle_traces, OracleSettings)
from rnn_perception.files import write_text_atomic  # noqa: E402
from rnn_perception.models.collision import load_collision_model, model_threshold  # noqa: E402
from sim.dodgeball.config import load_dodgeball_config  # noqa: E402
from sim.dodgeball.generate import generate  # noqa: E402

DEFAULTS = Path(__file__).resolve().parents[1] / 'rnn_perception' / 'models' / 'default'
EVALUATION_SEED = 20261207         # never used to train a shipped model
DEFAULT_ORACLE_NOISE_M = (0.01, 0.03, 0.1)
SCENES = ('plain', 'held_out')
COLUMNS = ('auroc', 'accuracy', 'lead_time_median_s', 'lead_time_p10_s', 'false_alarm_rate')


def simulate(root: Path, scene: str, episodes: int, seed: int, workers: int):
    """The throws of ``seed`` in ``scene`` (a dataset under ``root``), loaded."""
    config = load_dodgeball_config(overrides={
        'episodes': episodes, 'seed': seed, 'workers': workers,
        'randomisation': {'scene': scene}, 'output': {'out': str(root / scene)}})
    generate(config, progress=False)
    return load_dodgeball_dataset(root / scene)


def scored(traces: List[EpisodeTrace], threshold: float, reference: Dict,
           how: str) -> Dict:
    """One table row: the metrics at ``threshold`` (set ``how``), the metrics at the lowest
    threshold that reaches the reference model's accuracy, and every hit's lead time at
    ``threshold`` (for the curves)."""
    metrics = collision_metrics(traces, threshold)
    at_accuracy = threshold_for_accuracy(traces, reference['accuracy'])
    matched = None if at_accuracy is None else collision_metrics(traces, at_accuracy)
    return {**{key: metrics[key] for key in (*COLUMNS, 'episodes', 'hits', 'detected_hits')},
            'threshold': threshold, 'threshold_set': how,
            'at_reference_accuracy': None if matched is None else {
                key: matched[key] for key in (*COLUMNS, 'threshold')},
            'lead_times_s': [None if math.isnan(lead) else lead
                             for lead in lead_times_s(traces, threshold).tolist()]}


def evaluate_scene(dataset, models: Dict, oracle_noise: List[float], reference: Optional[Dict],
                   with_extras: bool, seconds: Dict) -> Dict[str, Dict]:
    """Every method's row on one scene; ``reference`` is the default model's plain-scene row
    (None while scoring the plain scene itself, whose default-model row it becomes)."""
    episodes = list(dataset.episodes())
    scene = DodgeballScene.from_manifest(dataset.manifest)
    rows: Dict[str, Dict] = {}
    for name, (model, threshold) in models.items():
        started = time.perf_counter()
        traces = dataset_traces(model, episodes, torch.device('cpu'))
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
        rows[name] = scored(traces, threshold, reference or collision_metrics(traces, threshold),
                            "the weights' own")
        reference = reference or rows[name]
    target = reference['false_alarm_rate']
    methods = {f'oracle, noise {noise * 100:g} cm': (oracle_traces, OracleSettings(noise_m=noise))
               for noise in (oracle_noise if with_extras else oracle_noise[:1])}
    methods['classical baseline'] = (baseline_traces, BaselineSettings())
    if with_extras:
        methods['baseline, perfect detection'] = (baseline_traces,
                                                  BaselineSettings(perfect_detection=True))
    for name, (method, settings) in methods.items():
        started = time.perf_counter()
        traces = method(episodes, scene, settings)
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
        rows[name] = scored(traces, threshold_for_false_alarm_rate(traces, target), reference,
                            f"false alarms <= default model's {target:.1%}")
    return rows


def markdown(results: Dict) -> str:
    """One table per scene, as in the README."""
    def number(value, form):
        return '-' if value is None else format(value, form)

    lines = []
    for scene, rows in results['scenes'].items():
        lines += [f"**{scene}** ({results['episodes']} throws of seed {results['seed']})", '',
                  '| method | AUROC | accuracy | median lead (p10) | false alarms | threshold '
                  "| median lead at the default model's accuracy |",
                  '| --- | --- | --- | --- | --- | --- | --- |']
        for name, r in rows.items():
            matched = r['at_reference_accuracy']
            lines.append(
                f"| {name} | {number(r['auroc'], '.4f')} | {number(r['accuracy'], '.2%')} | "
                f"{number(r['lead_time_median_s'], '.3f')} s "
                f"({number(r['lead_time_p10_s'], '.3f')} s) | "
                f"{number(r['false_alarm_rate'], '.1%')} | {r['threshold']:.3f} | "
                + ('not reached' if matched is None else
                   f"{number(matched['lead_time_median_s'], '.3f')} s "
                   f"({number(matched['false_alarm_rate'], '.1%')} false alarms)") + ' |')
        lines.append('')
    return '\n'.join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--episodes', type=int, default=400, help='throws per scene')
    parser.add_argument('--seed', type=int, default=EVALUATION_SEED,
                        help=f'simulator seed (default {EVALUATION_SEED}, never used to train)')
    parser.add_argument('--weights', type=Path, default=DEFAULTS / 'collision.safetensors',
                        help='the collision model (default: the shipped one)')
    parser.add_argument('--randomised-weights', type=Path,
                        default=DEFAULTS / 'collision_randomised.safetensors',
                        help='a second model row (default: the shipped randomised one)')
    parser.add_argument('--oracle-noise', type=float, nargs='+', metavar='M',
                        default=list(DEFAULT_ORACLE_NOISE_M),
                        help='oracle position noise per axis, metres (the first on both scenes)')
    parser.add_argument('--workers', type=int, default=1, help='simulation processes')
    parser.add_argument('--out', type=Path, default=Path('runs/lead_time_limits'),
                        help='directory for the JSON, the tables and the plots')
    parser.add_argument('--json', action='store_true',
                        help='print one JSON object (as run_all.py reads) instead of tables')
    args = parser.parse_args()
    if args.episodes < 2:
        parser.error('--episodes must be at least 2')

    started = time.perf_counter()
    models = {}
    for name, path in (('model (default)', args.weights),
                       ('model (randomised)', args.randomised_weights)):
        model, metadata = load_collision_model(path, torch.device('cpu'))
        models[name] = (model, model_threshold(metadata))
    results = {'episodes': args.episodes, 'seed': args.seed, 'weights': str(args.weights),
               'randomised_weights': str(args.randomised_weights),
               'oracle_noise_m': args.oracle_noise, 'scenes': {}}
    seconds: Dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix='lead_time_limits-') as root:
        reference = None
        for scene in SCENES:
            began = time.perf_counter()
            dataset = simulate(Path(root), scene, args.episodes, args.seed, args.workers)
            seconds[f'simulate {scene}'] = time.perf_counter() - began
            rows = evaluate_scene(dataset, models, args.oracle_noise, reference,
                                  with_extras=scene == 'plain', seconds=seconds)
            reference = reference or rows['model (default)']
            results['scenes'][scene] = rows
    results['seconds'] = {**seconds, 'total': time.perf_counter() - started}

    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(results)
    write_text_atomic(args.out / 'lead_time_limits.json', json.dumps(results, indent=1) + '\n')
    write_text_atomic(args.out / 'lead_time_limits.md', table)
    for scene, rows in results['scenes'].items():
        plot_lead_time_curves(
            {name: _leads(row) for name, row in rows.items()}, args.out / f'lead_time_{scene}.png',
            title=f'{scene}: {args.episodes} throws of seed {args.seed}, hits warned this early')
    if args.json:
        print(json.dumps(run_all_view(results)))
    else:
        print(table)
        print(f'wrote {args.out / "lead_time_limits.md"}, .json and the plots '
              f'({results["seconds"]["total"]:.0f} s)')
    return 0


def _leads(row: Dict) -> np.ndarray:
    """A row's lead times, ``nan`` for hits warned too late or never."""
    return np.array([np.nan if lead is None else lead for lead in row['lead_times_s']])


def run_all_view(results: Dict) -> Dict:
    """What ``run_all.py`` tabulates: AUROC and median lead time of the default model, the
    first oracle and the baseline on each scene, and the model's share of the oracle's median
    lead; the whole result beside them, less the per-hit lead times."""
    figures, ratios = {}, {}
    for scene, rows in results['scenes'].items():
        oracle = next(name for name in rows if name.startswith('oracle'))
        for name, short in (('model (default)', 'model'), (oracle, 'oracle'),
                            ('classical baseline', 'baseline')):
            for key in ('auroc', 'lead_time_median_s'):
                figures[f'{scene}_{short}_{key}'] = rows[name][key]
        model, best = rows['model (default)'], rows[oracle]
        if model['lead_time_median_s'] and best['lead_time_median_s']:
            ratios[f'{scene}_model_over_oracle_median_lead'] = (
                model['lead_time_median_s'] / best['lead_time_median_s'])
    compact = {**results, 'scenes': {
        scene: {name: {key: value for key, value in row.items() if key != 'lead_times_s'}
                for name, row in rows.items()}
        for scene, rows in results['scenes'].items()}}
    return {'benchmark': 'lead_time_limits', 'figures': figures, 'ratios': ratios,
            'results': compact}


if __name__ == '__main__':
    sys.exit(main())
