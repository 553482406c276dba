"""A JPEG camera frame -> the collision model's 64x64 input: libjpeg's reduced decoding (what
the collision node does on ``image_transport`` ``compressed``) against decoding in full and
resizing, side by side on the same frames.

For 640x480 and 1280x720 frames (OpenCV-encoded JPEG, quality 90, a textured scene with a disc
moving across it), each path is timed per frame in alternating blocks, so both see the same
machine load: reduced = ``CompressedImageDecoder`` (1/4 scale for 640x480, 1/8 for 1280x720)
then ``resize_frames``; full = ``cv2.imdecode`` at full size, BGR to RGB, then
``resize_frames``. Also reported: how far apart the two model inputs are (mean absolute
difference, 0..255).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_compressed_decode.py [--frames 300]
        [--json]
"""
from __future__ import annotations

import argparse
import json
from types import SimpleNamespace
from typing import List

import cv2
import numpy as np

from rnn_perception.data.compressed_image import CompressedImageDecoder
from rnn_perception.models.collision import CollisionConfig, resize_frames
from timing import alternate_blocks  # this script's folder is on sys.path

SIZES = ((480, 640), (720, 1280))
BLOCK = 20          # frames per path before switching to the other


def scene(height: int, width: int, index: int, rng: np.random.Generator) -> np.ndarray:
    """A textured RGB scene (gradients, a checker floor, sensor noise) with a moving disc."""
    rows, columns = np.mgrid[0:height, 0:width]
    image = np.stack([200 * columns / width, 180 * rows / height + 40,
                      128 + 60 * np.sin(columns / 17.0 + rows / 29.0)], axis=-1)
    floor = rows > height // 2
    image[floor & (((rows // 24) + (columns // 24)) % 2 == 0)] *= 0.5
    image += rng.normal(0, 4, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    cv2.circle(image, (width // 10 + index * width // 200, height // 3), height // 12,
               (240, 60, 40), -1)
    return image


def jpeg_messages(height: int, width: int, count: int) -> List[SimpleNamespace]:
    rng = np.random.default_rng(0)
    messages = []
    for index in range(count):
        ok, data = cv2.imencode('.jpg', cv2.cvtColor(scene(height, width, index, rng),
                                                     cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        messages.append(SimpleNamespace(format='rgb8; jpeg compressed bgr8', data=data.tobytes()))
    return messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=int, default=300, help='frames per size (default 300)')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    model_size = CollisionConfig().image_size
    figures, ratios, lines = {}, {}, []
    for height, width in SIZES:
        messages = jpeg_messages(height, width, args.frames)
        decode = CompressedImageDecoder(model_size)
        decode(messages[0])                   # learns the camera's size, as the node's first frame

        def reduced(message):
            return resize_frames(decode(message)[0][None], model_size)[0]

        def full(message):
            bgr = cv2.imdecode(np.frombuffer(message.data, np.uint8), cv2.IMREAD_COLOR)
            return resize_frames(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[None], model_size)[0]

        times, outputs = alternate_blocks({'reduced': reduced, 'full': full}, messages, BLOCK)
        name = f'{width}x{height}'
        p50 = {path: float(np.percentile(values, 50)) for path, values in times.items()}
        p99 = {path: float(np.percentile(values, 99)) for path, values in times.items()}
        difference = float(np.mean([np.abs(a.astype(int) - b).mean()
                                    for a, b in zip(outputs['reduced'], outputs['full'])]))
        figures.update({f'{name}_reduced_p50_ms': p50['reduced'],
                        f'{name}_full_p50_ms': p50['full'],
                        f'{name}_reduced_p99_ms': p99['reduced'],
                        f'{name}_full_p99_ms': p99['full'],
                        f'{name}_model_input_mean_abs_difference': difference})
        ratios[f'{name}_full_over_reduced_p50'] = p50['full'] / p50['reduced']
        lines.append(f'{name} JPEG -> {model_size[1]}x{model_size[0]} model input: reduced '
                     f'(1/{decode.scale}) p50 {p50["reduced"]:.2f} ms, p99 {p99["reduced"]:.2f} '
                     f'ms; full decode + resize p50 {p50["full"]:.2f} ms, p99 {p99["full"]:.2f} '
                     f'ms: {p50["full"] / p50["reduced"]:.1f}x faster at p50; inputs differ by '
                     f'{difference:.2f}/255 on average')
    report = {'benchmark': 'compressed_decode', 'frames': args.frames, 'figures': figures,
              'ratios': ratios}
    print(json.dumps(report) if args.json else '\n'.join(lines))


if __name__ == '__main__':
    main()
