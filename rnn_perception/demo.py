"""``make demo`` / ``python -m rnn_perception demo``: the dodgeball loop end to end, through
real DDS.

1. the simulator throws a few balls and records the robot's camera as a rosbag2 (raw frames, or
   with ``--bag-image jpeg`` the ``CompressedImage`` stream ``image_transport`` publishes, at
   ``--bag-resolution`` if given);
2. ``bringup dodgeball`` starts the collision node with the shipped model, in its own process
   (on the ``compressed`` transport for a compressed bag);
3. ``play`` publishes the bag over DDS with its recorded timing, in a third process;
4. this process listens to the node's answers, prints each throw's prediction against the
   truth and the metrics, the end-to-end latency per frame (a frame's arrival here -> the
   node's answer's arrival here), the same metrics from the offline ``eval collision --bag``
   of the same bag (they agree: the node steps the model exactly as the evaluation does), and
   writes a plot of the probability traces.

Everything runs on a DDS domain of its own with discovery kept on this host, so the demo never
talks to a robot's graph. The simulator lives in the source tree (``sim/``): the demo runs from a
clone, which is where ``make demo`` runs it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from .cli import OneLineParser, report_error, UsageError
from .device import add_device_option
from .models.step_engine import BACKENDS, TORCH_BACKEND

REPO = Path(__file__).resolve().parent.parent
ANSWER_TOPIC = '/collision_node/collision_probability_stamped'
IMAGE_TOPIC = '/camera/image_raw'
RAW_IMAGE = 'raw'
DEMO_SEED = 20261124          # never used to make training data
DEMO_QUEUE_DEPTH = 30         # a second of frames


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why."""


def isolate_dds() -> str:
    """Give this process and its children a DDS domain of their own, on localhost only: never
    the one the environment names, where nodes killed a moment ago still count as matched
    publishers and subscribers until their discovery lease expires, and would fool the waits."""
    inherited = os.environ.get('ROS_DOMAIN_ID', '0').strip()
    domain = 1 + os.getpid() % 101
    if str(domain) == inherited:
        domain = 1 + domain % 101
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    return os.environ['ROS_DOMAIN_ID']


def run_step(title: str, command: List[str], timeout_s: float) -> None:
    print(f'--- {title}', flush=True)
    try:
        result = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        raise DemoError(f'{title}: no result after {timeout_s:.0f} s') from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ['(no output)'])[-1]
        raise DemoError(f'{title} failed: {last}')
    if result.stdout.strip():
        print(result.stdout.strip().splitlines()[-1])


@contextmanager
def background(command: List[str]) -> Iterator[subprocess.Popen]:
    """A child process that is always stopped (SIGINT, then kill) when the block ends."""
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(subprocess.signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def failure(process: subprocess.Popen, what: str) -> DemoError:
    output = process.stdout.read().strip().splitlines() if process.stdout else []
    return DemoError(
        f'{what} (exit {process.returncode}): {output[-1] if output else "no output"}'
    )


Arrivals = Dict[int, float]          # image stamp (ns) -> time.monotonic() of arrival here
Answers = Dict[int, Tuple[float, float]]     # image stamp (ns) -> (probability, arrival time)


def camera_topic(bag_image: str) -> str:
    """Where the bag's camera is: ``image_transport``'s raw topic, or its ``/compressed``."""
    return IMAGE_TOPIC if bag_image == RAW_IMAGE else f'{IMAGE_TOPIC}/compressed'


def listen_to_replay(
    bag: Path, node: subprocess.Popen, rate: float, timeout_s: float, bag_image: str
) -> Tuple[Answers, Arrivals]:
    """Start the player once the node subscribes; collect the node's answers and, to measure
    latency, when each frame reached this process."""
    import rclpy
    from geometry_msgs.msg import PointStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from .data.bags import stamp_to_ns

    rclpy.init()
    listener = rclpy.create_node('dodgeball_demo')
    executor = SingleThreadedExecutor()
    executor.add_node(listener)
    answers: Answers = {}
    arrivals: Arrivals = {}
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    subscription = listener.create_subscription(
        PointStamped,
        ANSWER_TOPIC,
        lambda m: answers.__setitem__(stamp_to_ns(m.header.stamp), (m.point.x, time.monotonic())),
        reliable,
    )
    listener.create_subscription(
        Image if bag_image == RAW_IMAGE else CompressedImage,
        camera_topic(bag_image),
        lambda m: arrivals.__setitem__(stamp_to_ns(m.header.stamp), time.monotonic()),
        reliable,
    )

    def spin_until(done, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if done():
                return True
            executor.spin_once(timeout_sec=0.05)
        return done()

    try:
        # Answers are only heard once this subscription matched the node's publisher; the player
        # waits for both image subscriptions, the node's and this listener's (waiting for one, the
        # listener's could release it before the node's matched, and the node lose a throw).
        node_ready = spin_until(
            lambda: node.poll() is not None or subscription.get_publisher_count() > 0, 60
        )
        if node.poll() is not None:
            raise failure(node, 'the collision node stopped')
        if not node_ready:
            raise DemoError(f'the collision node did not publish {ANSWER_TOPIC} within 60 s')
        print(
            f'--- replaying the bag through DDS: play -> {camera_topic(bag_image)} -> '
            'collision_node',
            flush=True,
        )
        with background(
            [
                sys.executable,
                '-m',
                'rnn_perception',
                'play',
                '--bag',
                str(bag),
                '--rate',
                str(rate),
                '--wait-for-subscriber',
                f'{camera_topic(bag_image)}=2',
                '--start-delay',
                '1',
            ]
        ) as player:
            if not spin_until(lambda: player.poll() is not None, timeout_s):
                raise DemoError(f'the bag replay did not finish within {timeout_s:.0f} s')
            if player.returncode != 0:
                raise failure(player, 'the player failed')
            spin_until(lambda: False, 1.0)               # the last answers still in flight
    finally:
        executor.shutdown()
        listener.destroy_node()
        rclpy.try_shutdown()
    return answers, arrivals


def metrics_line(metrics: Dict[str, object]) -> str:
    number = lambda value, form: 'n/a' if value is None else format(value, form)  # noqa: E731
    return (
        f"accuracy {number(metrics['accuracy'], '.0%')}, AUROC {number(metrics['auroc'], '.3f')}, "
        f"median lead time {number(metrics['lead_time_median_s'], '.2f')} s, "
        f"false alarms {number(metrics['false_alarm_rate'], '.0%')} "
        f"(threshold {metrics['threshold']:.2f})"
    )


def report(bag: Path, weights: Path, answers: Answers, arrivals: Arrivals, threshold: float,
           plot: Path, backend: str) -> None:
    """Per-throw prediction vs truth, the metrics, latency, the offline evaluation of the same
    bag (on the node's ``backend``), and the probability-trace plot."""
    import numpy as np

    from .data.dodgeball_bag import episodes_from_bag
    from .evaluation.collision import evaluate_bag
    from .evaluation.collision_metrics import collision_metrics, EpisodeTrace
    from .evaluation.collision_plots import plot_traces

    traces, frames, answered = [], 0, 0
    print(
        f"\n{'throw':>5} {'truth':>6} {'contact':>8} {'predicted':>9} {'max P':>6} "
        f"{'alert at':>9} {'lead':>6} {'frames':>7}  ok"
    )
    for episode in episodes_from_bag(bag):
        seen = np.array([stamp in answers for stamp in episode.header_stamps_ns])
        frames += len(seen)
        answered += int(seen.sum())
        probabilities = [answers[stamp][0] for stamp in episode.header_stamps_ns[seen]]
        trace = EpisodeTrace(episode.episode, episode.stamps_s[seen], probabilities, episode.hit,
                             episode.contact_time_s)
        traces.append(trace)
        alert, lead = trace.first_alarm_s(threshold), trace.lead_time_s(threshold)
        predicted = trace.score() >= threshold
        print(
            f"{episode.episode:>5} {'HIT' if episode.hit else 'miss':>6} "
            f"{f'{episode.contact_time_s:.2f} s' if episode.hit else '-':>8} "
            f"{'HIT' if predicted else 'miss':>9} {trace.score():>6.2f} "
            f"{f'{alert:.2f} s' if alert is not None else '-':>9} "
            f"{f'{lead:.2f}s' if lead is not None else '-':>6} "
            f"{int(seen.sum()):>3}/{len(seen):<3}  "
            f"{'yes' if predicted == episode.hit else 'NO'}"
        )
    if answered == 0:
        raise DemoError('the node answered no frame of the replay')
    metrics = collision_metrics(traces, threshold)
    print(
        f"\nthrows {metrics['episodes']} ({metrics['hits']} hits), "
        f"frames answered {answered}/{frames}"
    )
    print(f'node over DDS:          {metrics_line(metrics)}')
    offline_traces, offline = evaluate_bag(weights, bag, threshold=threshold, backend=backend)
    print(f'offline eval --bag:     {metrics_line(offline)}')
    offline_probability = {
        stamp: p
        for episode, trace in zip(episodes_from_bag(bag), offline_traces)
        for stamp, p in zip(episode.header_stamps_ns, trace.probabilities)
    }
    difference = max(abs(p - offline_probability[stamp]) for stamp, (p, _) in answers.items()
                     if stamp in offline_probability)
    latency_ms = 1e3 * np.array(
        [arrived - arrivals[stamp] for stamp, (_, arrived) in answers.items() if stamp in arrivals]
    )
    print(f'largest |P node - P offline| on the answered frames: {difference:.1e}')
    if latency_ms.size:
        print(
            'end-to-end latency per frame (frame arrival -> answer arrival, '
            f'{latency_ms.size} frames): p50 {np.percentile(latency_ms, 50):.1f} ms, '
            f'p99 {np.percentile(latency_ms, 99):.1f} ms'
        )
    plot_traces(traces, plot, threshold)
    print(f'plot: {plot}')


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog='python -m rnn_perception demo', description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--episodes', type=int, default=10, help='throws to simulate (default 10)')
    parser.add_argument(
        '--seed',
        type=int,
        default=DEMO_SEED,
        help='simulator seed (default: one never used for training)',
    )
    parser.add_argument(
        '--out',
        type=Path,
        default=REPO / 'runs' / 'demo',
        help='directory for the bag, dataset and plot (default runs/demo; replaced)',
    )
    parser.add_argument(
        '--weights', default='', help='collision weights (default: the shipped model)'
    )
    add_device_option(parser, default='auto')
    parser.add_argument(
        '--backend', choices=BACKENDS, default=TORCH_BACKEND,
        help=f'what steps the model, in the node and the offline evaluation (default '
             f'{TORCH_BACKEND})')
    parser.add_argument(
        '--rate', type=float, default=1.0, help='replay speed (1 = recorded timing)'
    )
    parser.add_argument(
        '--bag-image', choices=(RAW_IMAGE, 'jpeg', 'png'), default=RAW_IMAGE,
        help='the camera in the bag: raw sensor_msgs/Image, or a CompressedImage stream the '
             'node takes on its compressed transport (default raw)')
    parser.add_argument(
        '--bag-resolution', metavar='WxH',
        help="the bag camera's resolution, e.g. 640x480 (default: the model's 64x64)")
    return parser


def run(args: argparse.Namespace) -> None:
    from .data.camera_frames import COMPRESSED_TRANSPORT, RAW_TRANSPORT
    from .models.collision import default_weights_path, load_collision_model, model_threshold

    if args.episodes < 1 or args.rate <= 0:
        raise DemoError('--episodes must be >= 1 and --rate > 0')
    if not (REPO / 'sim' / '__main__.py').is_file():
        raise DemoError(
            f'the simulator is not here ({REPO / "sim"}): '
            'run the demo from a clone of the repository'
        )
    weights = Path(args.weights) if args.weights else default_weights_path()
    _, metadata = load_collision_model(weights)
    print(f'DDS domain {isolate_dds()} (localhost only); weights {weights}', flush=True)

    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    bag = out / 'bag'
    camera = ['--bag-image', args.bag_image]
    if args.bag_resolution:
        camera += ['--bag-resolution', args.bag_resolution]
    run_step(f'simulating {args.episodes} throws (seed {args.seed}) into a rosbag2',
             [sys.executable, '-m', 'sim', 'dodgeball', '--episodes', str(args.episodes), '--seed',
              str(args.seed), '--out', str(out / 'data'), '--bag', str(bag), *camera],
             timeout_s=300)
    print(f'--- starting the collision node (bringup dodgeball) with {weights.name}', flush=True)
    # image_qos reliable, as the player offers: with auto the node would resubscribe when the
    # player appears, and the first frames could fall into that gap. A queue, not keep-last 1: a
    # player that stalls publishes the frames it owes back to back, and every frame must be
    # stepped for the node to answer what the offline evaluation does.
    node_command = [
        sys.executable,
        '-m',
        'rnn_perception',
        'bringup',
        'dodgeball',
        '--device',
        args.device,
        '--backend',
        args.backend,
        '--image-transport',
        RAW_TRANSPORT if args.bag_image == RAW_IMAGE else COMPRESSED_TRANSPORT,
        '--ros-args',
        '-p',
        f'weights:={weights}',
        '-p',
        'image_qos:=reliable',
        '-p',
        f'image_queue_depth:={DEMO_QUEUE_DEPTH}',
    ]
    with background(node_command) as node:
        answers, arrivals = listen_to_replay(
            bag, node, args.rate, timeout_s=60 + 4 * args.episodes / args.rate,
            bag_image=args.bag_image)
    report(bag, weights, answers, arrivals, model_threshold(metadata),
           out / 'collision_traces.png', args.backend)


def main(argv: Optional[List[str]] = None) -> int:
    from .data.bags import BagError
    from .models.weights_file import ModelFileError

    try:
        run(build_parser().parse_args(argv))
    except (UsageError, DemoError, ModelFileError, BagError, OSError) as error:
        return report_error('demo', error)
    return 0
