"""Training-time augmentation: random shifts, rotations, scaling and elastic distortion.

Every training image of an epoch is redrawn through a random geometric transform before it is
normalized; the validation and test images never are. All images of a chunk (several batches)
are resampled at once: per-image affine maps and displacement fields are arrays, and bilinear
interpolation is index arithmetic on the stacked images (no per-image Python).

The random numbers of batch ``k`` in epoch ``e`` come from a generator keyed by
``(seed, e, k)``, so an epoch's augmentation is a pure function of the recipe and the epoch
order: a resumed run replays it exactly, and the chunking does not change it.

The transform of one image maps an output pixel ``p`` back to a source point (``c`` the image
centre, ``(y, x)`` order)::

    src = c + R(-angle) (p - c - shift) / scale + displacement(p)

so the content moves by ``+shift``, turns counter-clockwise by ``angle`` degrees and grows by
``scale``; outside the image is 0 (MNIST's background). With an integer shift, no rotation and
scale 1, the result is the image shifted exactly.

>>> img = np.zeros((1, 28, 28), np.uint8); img[0, 10, 10] = 255
>>> out = transform(img, shift=np.array([[2.0, -3.0]]))
>>> int(out[0, 12, 7]), float(out.sum())
(255, 255.0)
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mnistlab.recipe import Recipe

# Images resampled together. Small on purpose: a chunk's dozen work arrays (~60 KB per image)
# then come from memory the allocator reuses. At 4,096 images every chunk mapped fresh pages and
# an epoch of MNIST took 3x the CPU time in page faults (145,000 of them; 1,000 at 128).
CHUNK = 128
_STREAM = 5_318_008  # keeps augmentation's random stream apart from shuffling and dropout


def active(recipe: Recipe) -> bool:
    """Whether the recipe asks for any augmentation."""
    return (
        recipe.augment_shift > 0
        or recipe.augment_rotate > 0
        or recipe.augment_scale > 0
        or recipe.augment_elastic > 0
    )


def draw(recipe: Recipe, epoch: int, step: int, n: int, side: tuple[int, int]) -> dict:
    """Random transform parameters of the ``n`` images of batch ``step`` in epoch ``epoch``."""
    rng = np.random.default_rng([recipe.seed, epoch, step, _STREAM])
    # Always drawn in this order, so turning one option on leaves the others' numbers alone.
    shift = rng.uniform(-1.0, 1.0, (n, 2)) * recipe.augment_shift
    angle = rng.uniform(-1.0, 1.0, n) * recipe.augment_rotate
    scale = 1.0 + rng.uniform(-1.0, 1.0, n) * recipe.augment_scale
    displacement = None
    if recipe.augment_elastic > 0:
        noise = rng.random((n, 2, *side), dtype=np.float32) * 2 - 1
        displacement = np.float32(recipe.augment_elastic) * _blur(
            noise, recipe.augment_elastic_sigma
        )
    return {"shift": shift, "angle": angle, "scale": scale, "displacement": displacement}


def transform(
    images: np.ndarray,
    shift: np.ndarray | None = None,
    angle: np.ndarray | None = None,
    scale: np.ndarray | None = None,
    displacement: np.ndarray | None = None,
) -> np.ndarray:
    """Resample images (N, H, W) through per-image transforms; float32 (N, H, W).

    ``shift`` (N, 2) pixels (down, right); ``angle`` (N,) degrees counter-clockwise; ``scale``
    (N,) factors; ``displacement`` (N, 2, H, W) pixels added to the source coordinates.
    """
    images = np.asarray(images)
    n, h, w = images.shape
    c_y, c_x = (h - 1) / 2.0, (w - 1) / 2.0
    u = np.arange(h, dtype=np.float32)[None, :, None] - np.float32(c_y)  # output, centred
    v = np.arange(w, dtype=np.float32)[None, None, :] - np.float32(c_x)
    if shift is not None:
        shift = np.asarray(shift, np.float32)
        u = u - shift[:, 0, None, None]
        v = v - shift[:, 1, None, None]
    if angle is not None or scale is not None:
        rad = np.radians(np.zeros(n) if angle is None else np.asarray(angle, np.float64))
        inv = 1.0 / (np.ones(n) if scale is None else np.asarray(scale, np.float64))
        cos = (np.cos(rad) * inv).astype(np.float32)[:, None, None]
        sin = (np.sin(rad) * inv).astype(np.float32)[:, None, None]
        u, v = cos * u + sin * v, cos * v - sin * u
    sy = np.broadcast_to(u + np.float32(c_y), (n, h, w))
    sx = np.broadcast_to(v + np.float32(c_x), (n, h, w))
    if displacement is not None:
        displacement = np.asarray(displacement, np.float32)
        sy, sx = sy + displacement[:, 0], sx + displacement[:, 1]
    return _bilinear(images, sy, sx)


def _bilinear(images: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Bilinear samples of each image at its own (sy, sx) grid; 0 outside the image."""
    n, h, w = images.shape
    # One zero row/column before and two after: every clipped corner index lands inside, and
    # a point more than a pixel outside reads only zeros.
    padded = np.zeros((n, h + 3, w + 3), np.float32)
    padded[:, 1 : h + 1, 1 : w + 1] = images
    flat = padded.reshape(-1)
    sy = np.clip(sy, -1.0, float(h))
    sx = np.clip(sx, -1.0, float(w))
    y0, x0 = np.floor(sy), np.floor(sx)
    wy, wx = (sy - y0).astype(np.float32), (sx - x0).astype(np.float32)
    base = (np.arange(n, dtype=np.int64) * ((h + 3) * (w + 3)))[:, None, None]
    i00 = base + (y0.astype(np.int64) + 1) * (w + 3) + (x0.astype(np.int64) + 1)
    top = flat[i00] * (1 - wx) + flat[i00 + 1] * wx
    bottom = flat[i00 + (w + 3)] * (1 - wx) + flat[i00 + (w + 4)] * wx
    return top * (1 - wy) + bottom * wy


def _blur(field: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing over the last two axes (zeros beyond the edge), as two matrix products."""

    def matrix(size: int) -> np.ndarray:
        d = np.arange(size)[:, None] - np.arange(size)[None, :]
        radius = math.ceil(4 * sigma)
        g = np.exp(-0.5 * (d / sigma) ** 2) * (np.abs(d) <= radius)
        return (g / (sigma * math.sqrt(2 * math.pi))).astype(np.float32)

    gy, gx = matrix(field.shape[-2]), matrix(field.shape[-1])
    return gy @ field @ gx.T


def epoch_images(
    recipe: Recipe,
    images: np.ndarray,
    order: np.ndarray,
    epoch: int,
    x: np.ndarray,
    mean: float,
    std: float,
) -> np.ndarray:
    """The training array of epoch ``epoch``: ``x`` itself without augmentation, else a new one.

    ``images`` are the raw training images (N, H, W) and ``x`` their normalized float32 rows
    (N, H*W) (``normalize.preprocess(images, mean, std)``). Row ``i`` of the result is image ``i``
    redrawn with the parameters of the batch ``order`` puts it in, then normalized the same way;
    so the engine's contract (batch ``k`` is ``result[order[k*bs:(k+1)*bs]]``) holds unchanged.
    """
    if not active(recipe):
        return x
    n, side = len(images), tuple(images.shape[1:])
    bs = recipe.batch_size
    out = np.empty((n, int(np.prod(side))), np.float32)
    per_chunk = max(1, CHUNK // bs)

    def redraw(first: int) -> None:  # one chunk of batches into its own rows of ``out``
        steps = range(first, min(first + per_chunk, -(-n // bs)))
        idx = order[first * bs : (steps[-1] + 1) * bs]
        parts = [draw(recipe, epoch, k, len(order[k * bs : (k + 1) * bs]), side) for k in steps]
        params = {
            key: None if parts[0][key] is None else np.concatenate([p[key] for p in parts])
            for key in parts[0]
        }
        rows = transform(images[idx], **params).reshape(len(idx), -1)
        rows -= np.float32(mean)  # normalize.preprocess's arithmetic
        rows /= np.float32(std)
        out[idx] = rows

    firsts = range(0, -(-n // bs), per_chunk)
    # The recipe's threads share the chunks: each chunk's numbers are keyed by its batches and
    # land in rows no other chunk touches, so the result is the same on any thread count, and
    # NumPy lets go of the GIL for the gathers and arithmetic that take the time.
    workers = min(recipe.threads or 1, len(firsts))
    if workers > 1:
        with ThreadPoolExecutor(workers, thread_name_prefix="augment") as pool:
            list(pool.map(redraw, firsts))
    else:
        for first in firsts:
            redraw(first)
    return out
