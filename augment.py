"""Differentiable augmentation of everything the critic sees (DiffAugment, Zhao et al. 2020).

    --diffaugment translation,cutout,color

Each transform takes a batch of [-1, 1] images (NHWC, 1 or 3 channels) and `uniform(shape)`, a
draw of U[0, 1) numbers (the model's, so the draws follow its seed and its replicas), and returns
the batch transformed: every image its own random transform, the same shape and dtype, values in
[-1, 1], and made of differentiable operations only, so the generator's gradient flows through
it. Where a transform moves or removes pixels it fills them with 0, the middle of the range.
The magnitudes are DiffAugment's: brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5];
translation up to 1/8 of the side; cutout a square of half the side.
"""
from keras import ops

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def color(images, uniform):
    """Brightness, saturation and contrast, each by a random factor per image, then clipped to [-1, 1]."""
    def factor():
        return ops.cast(uniform((ops.shape(images)[0], 1, 1, 1)), images.dtype)
    x = images + (factor() - 0.5)
    gray = ops.mean(x, axis=3, keepdims=True)
    x = (x - gray) * (factor() * 2.0) + gray
    mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * (factor() + 0.5) + mean
    return ops.clip(x, -1.0, 1.0)


def translation(images, uniform, ratio=TRANSLATION_RATIO):
    """A shift of up to `ratio` of the side along each axis, per image; what comes in is 0.

    Written as out = S_rows @ image @ S_cols^T with one-hot shift matrices, so it is a product of
    the image with constants: differentiable, and the same on every device and precision.
    """
    count, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]

    def shifts(size):
        most = int(size * ratio + 0.5)
        return ops.cast(ops.floor(uniform((count,)) * (2 * most + 1)), "int32") - most

    def shift_matrix(shift, size):
        """M[b, i, k] = 1 where k = i - shift_b: row i of the output is row i - shift_b of the input."""
        i = ops.arange(size, dtype="int32")[None, :, None]
        k = ops.arange(size, dtype="int32")[None, None, :]
        return ops.cast(ops.equal(k, i - shift[:, None, None]), images.dtype)

    x = ops.einsum("bik,bkwc->biwc", shift_matrix(shifts(height), height), images)
    return ops.einsum("bjk,bhkc->bhjc", shift_matrix(shifts(width), width), x)


def cutout(images, uniform, ratio=CUTOUT_RATIO):
    """A square of `ratio` of the side set to 0 at a random place per image (it may cross the border)."""
    count, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]

    def inside(size, side):
        """(count, side) booleans: the positions a random window of `size` covers."""
        start = ops.cast(ops.floor(uniform((count, 1)) * (side + 1 - size % 2)), "int32") - size // 2
        position = ops.arange(side, dtype="int32")[None, :]
        return ops.logical_and(position >= start, position < start + size)

    rows = inside(int(height * ratio + 0.5), height)
    cols = inside(int(width * ratio + 0.5), width)
    keep = ops.logical_not(ops.logical_and(rows[:, :, None], cols[:, None, :]))
    return images * ops.cast(keep, images.dtype)[:, :, :, None]


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}
"""--diffaugment's names -> transform, the one list the flag checks against."""


def parse_policy(policy):
    """"translation,cutout" (or "translation+cutout", as compare.py's --models entries need) ->
    ("translation", "cutout"); None, "" and "none" -> (); ValueError naming an unknown transform."""
    names = tuple(name.strip() for name in (policy or "").replace("+", ",").split(",")
                  if name.strip() not in ("", "none"))
    for name in names:
        if name not in TRANSFORMS:
            raise ValueError(f"--diffaugment: unknown transform {name!r}: use any of {', '.join(TRANSFORMS)}")
    if len(set(names)) < len(names):
        raise ValueError(f"--diffaugment: a transform is named twice in {policy!r}")
    return names


def diff_augment(images, policy, uniform):
    """The transforms of `policy` (names, in the order given) applied to `images`."""
    for name in policy:
        images = TRANSFORMS[name](images, uniform)
    return images
