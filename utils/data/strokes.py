"""Strokes: a procedurally generated, download-free few-shot dataset of glyphs.

Meant as a drop-in stand-in for torchmeta's Omniglot (same split sizes, same item
format) so that a first run shows meta-learning without fetching anything.

Generative process
------------------
Coordinates live on a canvas ``[-1, 1]^2`` (y pointing down, like image rows).

* **Class (glyph).** Global class ``c`` draws, from ``np.random.default_rng([seed,
  GLYPH_STREAM, c])``, 2-4 cubic Bézier strokes, i.e. control points of shape
  ``[num_strokes, 4, 2]``. Each stroke runs from a start point (for strokes after
  the first, with probability ``CONNECT_PROB`` a point on an earlier stroke, so
  strokes touch like pen strokes do) to an end point 0.5-1.4 away; its two inner
  control points lie on the chord at 1/3 and 2/3 plus Gaussian offsets
  (``CURVE_STD``), which bends the stroke. The glyph is then centred and scaled so
  its bounding box fits ``[-0.75, 0.75]^2`` (aspect ratio kept).
* **Example.** Example ``j`` of class ``c`` draws, from ``default_rng([seed,
  EXAMPLE_STREAM, c, j])``: control-point jitter (Gaussian, ``JITTER_STD``), a stroke
  width (``WIDTH_RANGE`` pixels at 28x28), and a small affine map: rotation
  (``ROTATION_DEG``), isotropic scale (``SCALE_RANGE``), shear (``SHEAR``) and shift
  (``SHIFT``). Strokes are sampled at ``BEZIER_POINTS`` points and drawn with PIL
  ``ImageDraw`` at ``SUPERSAMPLE`` times the output size with round joints and caps,
  then downsampled with a box filter (antialiasing). Ink is 255 on a 0 background.

Nothing depends on global RNG state: glyph ``c`` depends only on ``(seed, c)`` and
example ``j`` of class ``c`` only on ``(seed, c, j)``. Global class ids are
``[0, 1028)`` for meta-train, ``[1028, 1200)`` for meta-val and ``[1200, 1623)`` for
meta-test (sizes configurable through ``StrokesClassDataset.split_sizes``), so the
splits are disjoint by construction.
"""
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from utils.data.torchmeta_compat import ClassDataset, CombinationMetaDataset, Dataset

__all__ = ["Strokes", "StrokesClassDataset", "StrokesDataset", "glyph_strokes",
           "render_example"]

GLYPH_STREAM, EXAMPLE_STREAM = 0, 1   # separate RNG streams for glyphs and examples
NUM_STROKES = (2, 4)                  # inclusive range of strokes per glyph
CONNECT_PROB = 0.6                    # P(stroke k > 0 starts on an earlier stroke)
CURVE_STD = 0.35                      # std of inner control-point offsets (glyph)
JITTER_STD = 0.07                     # std of per-example control-point jitter
WIDTH_RANGE = (1.2, 2.6)              # stroke width in output (28x28) pixels
ROTATION_DEG = 15.0                   # max |rotation| in degrees
SCALE_RANGE = (0.85, 1.1)             # isotropic scale
SHEAR = 0.15                          # max |shear| coefficient
SHIFT = 0.1                           # max |shift| per axis, canvas units
SUPERSAMPLE = 4                       # render at this factor, then box-downsample
BEZIER_POINTS = 20                    # samples per stroke

_T = np.linspace(0.0, 1.0, BEZIER_POINTS)
# Cubic Bernstein basis, shape [BEZIER_POINTS, 4].
_BERNSTEIN = np.stack([(1 - _T) ** 3, 3 * _T * (1 - _T) ** 2,
                       3 * _T ** 2 * (1 - _T), _T ** 3], axis=1)


def _bezier(control):
    """Points on cubic Béziers: control [S, 4, 2] -> curves [S, BEZIER_POINTS, 2]."""
    return np.einsum("pk,skd->spd", _BERNSTEIN, control)


@lru_cache(maxsize=4096)
def glyph_strokes(seed, class_id):
    """Control points of glyph ``class_id``: read-only float array [num_strokes, 4, 2]."""
    rng = np.random.default_rng([seed, GLYPH_STREAM, class_id])
    num_strokes = int(rng.integers(NUM_STROKES[0], NUM_STROKES[1] + 1))
    strokes = []
    for k in range(num_strokes):
        if k > 0 and rng.random() < CONNECT_PROB:
            curve = _bezier(strokes[rng.integers(k)][None])[0]
            start = curve[rng.integers(BEZIER_POINTS)]
        else:
            start = rng.uniform(-0.8, 0.8, size=2)
        angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.4)
        end = np.clip(start + length * np.array([np.cos(angle), np.sin(angle)]), -1, 1)
        inner = [start + f * (end - start) + rng.normal(0, CURVE_STD, size=2)
                 for f in (1 / 3, 2 / 3)]
        strokes.append(np.stack([start, inner[0], inner[1], end]))
    control = np.stack(strokes)
    points = _bezier(control).reshape(-1, 2)
    low, high = points.min(axis=0), points.max(axis=0)
    extent = np.maximum(high - low, 1e-3)
    scale = np.minimum(1.5 / extent, 2.0 * 1.5 / extent.max())  # thin axis: <= 2x stretch
    control = (control - (low + high) / 2) * scale
    control.setflags(write=False)
    return control


def render_example(seed, class_id, example_id, image_size=28):
    """Example ``example_id`` of glyph ``class_id``: uint8 array [image_size, image_size]."""
    rng = np.random.default_rng([seed, EXAMPLE_STREAM, class_id, example_id])
    control = glyph_strokes(seed, class_id)
    control = control + rng.normal(0, JITTER_STD, size=control.shape)
    angle = np.deg2rad(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    cos, sin = np.cos(angle), np.sin(angle)
    linear = rng.uniform(*SCALE_RANGE) * np.array([[cos, -sin], [sin, cos]]) @ np.array(
        [[1.0, rng.uniform(-SHEAR, SHEAR)], [0.0, 1.0]])
    shift = rng.uniform(-SHIFT, SHIFT, size=2)
    width = rng.uniform(*WIDTH_RANGE) * SUPERSAMPLE
    curves = _bezier(control) @ linear.T + shift             # [S, BEZIER_POINTS, 2]

    size = image_size * SUPERSAMPLE
    pixels = (curves + 1.0) * (size / 2.0)                    # canvas -> pixel coords
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    radius = width / 2.0
    for curve in pixels:
        draw.line(curve.ravel().tolist(), fill=255, width=int(round(width)))
        for x, y in curve:                                    # round joints and caps
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    small = canvas.resize((image_size, image_size), Image.BOX)
    return np.asarray(small)


class StrokesDataset(Dataset):
    """All examples of one glyph; item ``j`` is ``(PIL image 'L', class_name)``."""

    def __init__(self, index, seed, class_id, class_name, num_examples, image_size,
                 transform=None, target_transform=None):
        super().__init__(index, transform=transform, target_transform=target_transform)
        self.seed, self.class_id, self.class_name = seed, class_id, class_name
        self.num_examples, self.image_size = num_examples, image_size

    def __len__(self):
        return self.num_examples

    def __getitem__(self, index):
        if not 0 <= index < self.num_examples:
            raise IndexError(f"example {index} out of range [0, {self.num_examples})")
        image = Image.fromarray(render_example(self.seed, self.class_id, int(index),
                                               self.image_size), mode="L")
        target = self.class_name
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


class StrokesClassDataset(ClassDataset):
    """Glyph classes of one meta-split; item ``i`` is a :class:`StrokesDataset`.

    ``root`` and ``download`` exist only for signature compatibility with torchmeta
    datasets and are ignored: everything is generated on the fly, nothing touches disk.
    """
    split_sizes = {"train": 1028, "val": 172, "test": 423}   # Omniglot (Vinyals) sizes

    def __init__(self, root=None, meta_train=False, meta_val=False, meta_test=False,
                 meta_split=None, transform=None, class_augmentations=None,
                 download=False, seed=0, num_examples_per_class=20, image_size=28):
        super().__init__(meta_train=meta_train, meta_val=meta_val, meta_test=meta_test,
                         meta_split=meta_split, class_augmentations=class_augmentations)
        self.root, self.transform, self.seed = root, transform, int(seed)
        self.num_examples_per_class, self.image_size = num_examples_per_class, image_size
        offset = 0
        for name in ("train", "val", "test"):
            if name == self.meta_split:
                break
            offset += self.split_sizes[name]
        self.class_offset = offset              # global id of this split's class 0
        self._num_classes = self.split_sizes[self.meta_split]

    @property
    def num_classes(self):
        return self._num_classes

    def __getitem__(self, index):
        class_id = self.class_offset + index % self.num_classes
        return StrokesDataset(index, self.seed, class_id, f"glyph{class_id:04d}",
                              self.num_examples_per_class, self.image_size,
                              transform=self.get_transform(index, self.transform),
                              target_transform=self.get_target_transform(index))


class Strokes(CombinationMetaDataset):
    """Procedural few-shot glyph dataset with torchmeta's Omniglot interface.

    Tasks are N-way combinations of glyph classes; items are ``(PIL image mode 'L',
    class_name)``, so ``transform=ToTensor()`` gives tensors [1, image_size,
    image_size] in [0, 1]. ``root`` and ``download`` are accepted and ignored (no
    files). ``seed`` selects the family of glyphs; ``num_examples_per_class`` and
    ``image_size`` control examples per class and output resolution. See the module
    docstring for the generative process.
    """

    def __init__(self, root, num_classes_per_task=None, meta_train=False,
                 meta_val=False, meta_test=False, meta_split=None, transform=None,
                 target_transform=None, dataset_transform=None,
                 class_augmentations=None, download=False, seed=0,
                 num_examples_per_class=20, image_size=28):
        dataset = StrokesClassDataset(
            root, meta_train=meta_train, meta_val=meta_val, meta_test=meta_test,
            meta_split=meta_split, transform=transform,
            class_augmentations=class_augmentations, download=download, seed=seed,
            num_examples_per_class=num_examples_per_class, image_size=image_size)
        super().__init__(dataset, num_classes_per_task, target_transform=target_transform,
                         dataset_transform=dataset_transform)
