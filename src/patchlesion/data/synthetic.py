"""A synthetic stand-in for HAM10000, written in the real dataset's on-disk format.

The real archive cannot be shipped with the package or fetched in tests, so the pipeline is exercised
on a generated directory with the same layout (``HAM10000_metadata.csv`` + ``HAM10000_images/``),
the same class, lesion and diagnosis-type structure, and images whose class can be learned, but
*only* from fine detail.  That last property mirrors the paper's motivation (Sec. I): downsampling the
600x450 images throws away fine structure that full-resolution patches keep.

Design of the images (all intensities on a 0..1 scale before JPEG encoding):

* skin-toned background with low-frequency shading;
* one dark brownish lesion (irregular, soft-edged blob, 10-40% of the frame, random position);
* the class signal: a fine luminance texture inside the lesion only (:data:`SYNTHETIC_TEXTURES`),
  invariant to horizontal and vertical flips (training augments with both) and, by its period of a
  few pixels, mostly removed by downsampling;
* a weak class cue in the lesion's mean colour, swamped by per-lesion colour variation;
* per-pixel Gaussian noise.

Several images of one lesion are variants of one synthetic lesion (same shape, colours, texture
class and skin) with a new position, a +-10% scale change, a brightness change and fresh noise.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from patchlesion.data.synthetic_images import (  # noqa: F401 (re-exported)
    CLASS_COLOUR_SHIFT,
    LESION_COLOUR_JITTER,
    NOISE_SIGMA,
    SYNTHETIC_TEXTURES,
    TEXTURE_AMPLITUDE,
    lesion_params,
    render_lesion,
    texture_pattern,
)
from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import DX_TO_CLASS

__all__ = [
    "METADATA_COLUMNS",
    "METADATA_FILENAME",
    "IMAGES_DIRNAME",
    "REAL_IMAGES_PER_CLASS",
    "REAL_LESIONS_PER_CLASS",
    "REAL_MULTI_IMAGE_LESIONS_PER_CLASS",
    "REAL_DX_TYPE_MIX",
    "MIN_IMAGES_PER_CLASS",
    "MAX_IMAGES_PER_LESION",
    "FIRST_IMAGE_NUMBER",
    "SYNTHETIC_TEXTURES",
    "TEXTURE_AMPLITUDE",
    "NOISE_SIGMA",
    "CLASS_COLOUR_SHIFT",
    "LESION_COLOUR_JITTER",
    "class_image_counts",
    "texture_pattern",
    "make_synthetic_ham10000",
]

# --------------------------------------------------------------------------------------------------
# Layout of a HAM10000 directory
# --------------------------------------------------------------------------------------------------

METADATA_FILENAME = "HAM10000_metadata.csv"
IMAGES_DIRNAME = "HAM10000_images"
#: Columns of ``HAM10000_metadata.csv``, in order (the ISIC/Kaggle release; no ``dataset`` column).
METADATA_COLUMNS: tuple[str, ...] = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
#: Real image ids run ISIC_0024306 .. ISIC_0034320.
FIRST_IMAGE_NUMBER = 24306

# --------------------------------------------------------------------------------------------------
# Statistics of the real metadata (copied from HAM10000_metadata.csv, 10015 images, 7470 lesions)
# --------------------------------------------------------------------------------------------------

REAL_IMAGES_PER_CLASS: dict[str, int] = {
    "akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142,
}
REAL_LESIONS_PER_CLASS: dict[str, int] = {
    "akiec": 228, "bcc": 327, "bkl": 727, "df": 73, "mel": 614, "nv": 5403, "vasc": 98,
}
REAL_MULTI_IMAGE_LESIONS_PER_CLASS: dict[str, int] = {
    "akiec": 77, "bcc": 152, "bkl": 287, "df": 34, "mel": 384, "nv": 988, "vasc": 34,
}
#: Image counts per (dx, dx_type); only non-zero entries.
REAL_DX_TYPE_MIX: dict[str, dict[str, int]] = {
    "akiec": {"histo": 327},
    "bcc": {"histo": 514},
    "bkl": {"confocal": 69, "consensus": 264, "histo": 766},
    "df": {"consensus": 60, "histo": 55},
    "mel": {"histo": 1113},
    "nv": {"consensus": 503, "follow_up": 3704, "histo": 2498},
    "vasc": {"consensus": 75, "histo": 67},
}
_REAL_SEX_COUNTS: dict[str, int] = {"male": 5406, "female": 4552, "unknown": 57}
_REAL_MISSING_AGE_FRACTION = 57 / 10015
_REAL_LOCALIZATION_COUNTS: dict[str, int] = {
    "back": 2192, "lower extremity": 2077, "trunk": 1404, "upper extremity": 1118, "abdomen": 1022,
    "face": 745, "chest": 407, "foot": 319, "unknown": 234, "neck": 168, "scalp": 128, "hand": 90,
    "ear": 56, "genital": 48, "acral": 7,
}
# Ages in HAM10000 are multiples of 5 in 0..85; rough per-class means (keratinocyte cancers and
# keratoses are diseases of older patients, naevi of younger ones).  Only plausibility matters here.
_AGE_MEAN: dict[str, float] = {
    "akiec": 67.0, "bcc": 67.0, "bkl": 64.0, "df": 53.0, "mel": 61.0, "nv": 47.0, "vasc": 52.0,
}
_AGE_SD = 15.0
# Row order of the real metadata file: blocks of dx in this order, lesions' images consecutive.
_ROW_DX_ORDER: tuple[str, ...] = ("bkl", "nv", "df", "mel", "vasc", "bcc", "akiec")

MIN_IMAGES_PER_CLASS = 8
MAX_IMAGES_PER_LESION = 6

# --------------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------------

def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``weights`` summing to ``total`` (Hamilton's method)."""
    weights = np.asarray(weights, dtype=float)
    quotas = weights / weights.sum() * total
    counts = np.floor(quotas).astype(int)
    short = total - int(counts.sum())
    # Stable sort: ties go to the earlier entry, so the result is deterministic.
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


def class_image_counts(n_images: int) -> dict[str, int]:
    """Images per dx code for a synthetic set of ``n_images``: proportional to HAM10000, each >= 8."""
    n_classes = len(REAL_IMAGES_PER_CLASS)
    minimum = MIN_IMAGES_PER_CLASS * n_classes
    if n_images < minimum:
        raise PatchlesionError(
            f"n_images {n_images} is too small: each of the {n_classes} classes needs at least {MIN_IMAGES_PER_CLASS} images, "
            f"so ask for at least {minimum} images."
        )
    dxs = list(REAL_IMAGES_PER_CLASS)
    real = np.array([REAL_IMAGES_PER_CLASS[d] for d in dxs], dtype=float)
    fixed = np.zeros(len(dxs), dtype=bool)
    # Largest remainder among the classes not pinned at the minimum; pin any that fall below it and
    # redo, so that classes above the minimum stay exactly proportional (exact at n_images=10015).
    while True:
        counts = np.full(len(dxs), MIN_IMAGES_PER_CLASS)
        free = ~fixed
        counts[free] = _largest_remainder(real[free], n_images - MIN_IMAGES_PER_CLASS * int(fixed.sum()))
        below = free & (counts < MIN_IMAGES_PER_CLASS)
        if not below.any():
            return {d: int(c) for d, c in zip(dxs, counts)}
        fixed |= below


def _lesion_sizes(dx: str, n_images: int, rng: np.random.Generator) -> np.ndarray:
    """Images per lesion (1..6) for ``n_images`` images of one class, with the real class's ratios."""
    n_lesions = round(n_images * REAL_LESIONS_PER_CLASS[dx] / REAL_IMAGES_PER_CLASS[dx])
    n_lesions = min(n_images, max(n_lesions, math.ceil(n_images / MAX_IMAGES_PER_LESION)))
    extra = n_images - n_lesions
    sizes = np.ones(n_lesions, dtype=int)
    if extra == 0:
        return sizes
    # Number of multi-image lesions as in the real class, then spread the remaining extra images
    # uniformly over them (this reproduces the real 2 >> 3 >> 4..6 images-per-lesion histogram).
    n_multi = round(n_lesions * REAL_MULTI_IMAGE_LESIONS_PER_CLASS[dx] / REAL_LESIONS_PER_CLASS[dx])
    n_multi = min(extra, n_lesions, max(n_multi, math.ceil(extra / (MAX_IMAGES_PER_LESION - 1))))
    multi = rng.choice(n_lesions, size=n_multi, replace=False)
    sizes[multi] += 1
    left = extra - n_multi
    while left > 0:
        room = multi[sizes[multi] < MAX_IMAGES_PER_LESION]
        add = np.bincount(rng.integers(0, room.size, size=left), minlength=room.size)
        add = np.minimum(add, MAX_IMAGES_PER_LESION - sizes[room])
        sizes[room] += add
        left -= int(add.sum())
    return sizes


def _assign_dx_types(dx: str, sizes: np.ndarray, rng: np.random.Generator) -> list[str]:
    """dx_type per lesion so that the class's image-level mix matches the real one (greedy)."""
    mix = REAL_DX_TYPE_MIX[dx]
    types = list(mix)
    target = _largest_remainder(np.array([mix[t] for t in types], dtype=float), int(sizes.sum()))
    assigned = np.zeros(len(types), dtype=int)
    out = [""] * sizes.size
    # Largest lesions first (random among equal sizes), each to the type furthest below its target.
    order = np.lexsort((rng.permutation(sizes.size), -sizes))
    for i in order:
        k = int(np.argmax(target - assigned))
        out[i] = types[k]
        assigned[k] += sizes[i]
    return out


def _build_metadata(n_images: int, seed: int) -> tuple[pd.DataFrame, list[int]]:
    """Metadata rows (real file order) and, per row, the index of its lesion in generation order."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    counts = class_image_counts(n_images)
    sex_names = list(_REAL_SEX_COUNTS)
    sex_p = np.array(list(_REAL_SEX_COUNTS.values()), dtype=float)
    loc_names = list(_REAL_LOCALIZATION_COUNTS)
    loc_p = np.array(list(_REAL_LOCALIZATION_COUNTS.values()), dtype=float)

    lesions = []  # (dx, size, dx_type, age, sex, localization)
    for dx in _ROW_DX_ORDER:
        sizes = _lesion_sizes(dx, counts[dx], rng)
        dx_types = _assign_dx_types(dx, sizes, rng)
        ages = np.clip(np.round(rng.normal(_AGE_MEAN[dx], _AGE_SD, sizes.size) / 5.0) * 5.0, 0.0, 85.0)
        ages += 0.0  # -0.0 (rounded small negatives) would be written as "-0.0"
        missing = rng.random(sizes.size) < _REAL_MISSING_AGE_FRACTION
        sexes = rng.choice(len(sex_names), size=sizes.size, p=sex_p / sex_p.sum())
        locs = rng.choice(len(loc_names), size=sizes.size, p=loc_p / loc_p.sum())
        for j in range(sizes.size):
            lesions.append((dx, int(sizes[j]), dx_types[j], np.nan if missing[j] else float(ages[j]),
                            sex_names[sexes[j]], loc_names[locs[j]]))

    # Lesion numbers and image numbers in shuffled order: a lesion's images are not contiguous ids.
    lesion_numbers = rng.permutation(len(lesions))
    image_numbers = FIRST_IMAGE_NUMBER + rng.permutation(n_images)
    rows, lesion_index = [], []
    for li, (dx, size, dx_type, age, sex, loc) in enumerate(lesions):
        for _ in range(size):
            rows.append((f"HAM_{lesion_numbers[li]:07d}", f"ISIC_{image_numbers[len(rows)]:07d}",
                         dx, dx_type, age, sex, loc))
            lesion_index.append(li)
    frame = pd.DataFrame(rows, columns=list(METADATA_COLUMNS))
    frame["age"] = frame["age"].astype(float)
    return frame, lesion_index


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------

def make_synthetic_ham10000(
    out_dir: str | Path,
    n_images: int = 10015,
    image_size: tuple[int, int] = (600, 450),
    seed: int = 0,
    jpeg_quality: int = 95,
    write_images: bool = True,
) -> pd.DataFrame:
    """Write a synthetic HAM10000 directory (metadata CSV + JPEGs) to ``out_dir``; return the metadata.

    ``image_size`` is (width, height) like PIL.  Output is a pure function of the arguments: the same
    seed gives a byte-identical CSV and identical pixels.  ``write_images=False`` writes only the CSV.
    """
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)):
        raise PatchlesionError(f"n_images must be a whole number, got {n_images!r}.")
    width, height = (int(s) for s in image_size)
    if width < 8 or height < 8:
        raise PatchlesionError(f"image size {width}x{height} is too small: give at least 8x8 pixels.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PatchlesionError(f"seed must be a whole number of at least 0, got {seed!r}.")
    if not 1 <= int(jpeg_quality) <= 100:
        raise PatchlesionError(f"jpeg_quality must be in 1..100, got {jpeg_quality!r}.")

    frame, lesion_index = _build_metadata(int(n_images), int(seed))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not write_images:
        _write_metadata(frame, out)
        return frame

    images_dir = out / IMAGES_DIRNAME
    images_dir.mkdir(exist_ok=True)
    params: dict = {}
    k_in_lesion: dict[int, int] = {}
    for image_id, dx, li in zip(frame["image_id"], frame["dx"], lesion_index):
        # Independent streams per lesion and per image: one image's randomness never shifts another's.
        if li not in params:
            lesion_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, li)))
            params[li] = lesion_params(DX_TO_CLASS[dx], lesion_rng)
        k = k_in_lesion.get(li, 0)
        k_in_lesion[li] = k + 1
        image_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, li, k)))
        pixels = render_lesion(params[li], width, height, image_rng)
        Image.fromarray(pixels).save(images_dir / f"{image_id}.jpg", "JPEG",
                                                 quality=int(jpeg_quality))
    _write_metadata(frame, out)  # last: a folder cut short has no metadata, so nothing reads it as complete
    return frame


def _write_metadata(frame: pd.DataFrame, out: Path) -> None:
    """The metadata CSV, written under a temporary name and renamed: it is there whole or not at all."""
    partial = out / f".{METADATA_FILENAME}.partial"
    frame.to_csv(partial, index=False, lineterminator="\n")
    partial.replace(out / METADATA_FILENAME)
