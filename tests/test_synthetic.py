"""Tests of the synthetic HAM10000 generator (patchlesion.data.synthetic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from patchlesion.data.synthetic import (
    IMAGES_DIRNAME,
    METADATA_COLUMNS,
    METADATA_FILENAME,
    MIN_IMAGES_PER_CLASS,
    REAL_DX_TYPE_MIX,
    REAL_IMAGES_PER_CLASS,
    REAL_LESIONS_PER_CLASS,
    SYNTHETIC_TEXTURES,
    TEXTURE_AMPLITUDE,
    class_image_counts,
    make_synthetic_ham10000,
    texture_pattern,
)
from patchlesion.errors import PatchlesionError
from patchlesion.method.classes import DX_TO_CLASS

N_SMALL = 120
SIZE_SMALL = (96, 72)  # (width, height)
SEED = 1
LOCALIZATIONS = {
    "back", "lower extremity", "trunk", "upper extremity", "abdomen", "face", "chest", "foot",
    "unknown", "neck", "scalp", "hand", "ear", "genital", "acral",
}
LESION_FIELDS = ["dx", "dx_type", "age", "sex", "localization"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic_small")
    frame = make_synthetic_ham10000(out, n_images=N_SMALL, image_size=SIZE_SMALL, seed=SEED)
    return out, frame


@pytest.fixture(scope="module")
def full_metadata(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic_full")
    frame = make_synthetic_ham10000(out, seed=0, write_images=False)
    return out, frame


def _load(out, image_id) -> np.ndarray:
    return np.asarray(Image.open(out / IMAGES_DIRNAME / f"{image_id}.jpg").convert("RGB"))


# --------------------------------------------------------------------------------------------------
# Metadata format
# --------------------------------------------------------------------------------------------------

def test_metadata_header_and_columns(small):
    out, frame = small
    text = (out / METADATA_FILENAME).read_text()
    assert text.splitlines()[0] == "lesion_id,image_id,dx,dx_type,age,sex,localization"
    assert tuple(frame.columns) == METADATA_COLUMNS
    on_disk = pd.read_csv(out / METADATA_FILENAME)
    pd.testing.assert_frame_equal(on_disk, frame, check_dtype=False)


def test_metadata_values_use_ham_vocabulary(full_metadata):
    out, frame = full_metadata
    assert set(frame["dx"]) == set(REAL_IMAGES_PER_CLASS)
    assert set(frame["dx_type"]) <= {"histo", "follow_up", "consensus", "confocal"}
    assert set(frame["sex"]) <= {"male", "female", "unknown"}
    assert set(frame["localization"]) <= LOCALIZATIONS
    ages = frame["age"].dropna()
    assert ((ages % 5 == 0) & (ages >= 0) & (ages <= 85)).all()
    # Raw CSV: age written like the real file, "45.0" or empty.
    raw_ages = pd.read_csv(out / METADATA_FILENAME, dtype=str, keep_default_na=False)["age"]
    assert raw_ages.str.fullmatch(r"\d+\.0|").all()
    assert (raw_ages == "").any()


def test_ids_unique_well_formed_and_shuffled(small, full_metadata):
    for _, frame in (small, full_metadata):
        n = len(frame)
        assert frame["image_id"].is_unique
        assert frame["image_id"].str.fullmatch(r"ISIC_\d{7}").all()
        assert frame["lesion_id"].str.fullmatch(r"HAM_\d{7}").all()
        numbers = frame["image_id"].str[5:].astype(int)
        assert set(numbers) == set(range(24306, 24306 + n))
        # ids are handed out in shuffled order: not increasing along the (lesion-grouped) rows
        assert not numbers.is_monotonic_increasing
    # rows of one lesion are consecutive, as in the real file
    frame = full_metadata[1]
    assert (frame["lesion_id"] != frame["lesion_id"].shift()).sum() == frame["lesion_id"].nunique()


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------

def test_every_image_is_a_jpeg_of_the_requested_size(small):
    out, frame = small
    files = sorted(p.name for p in (out / IMAGES_DIRNAME).iterdir())
    assert files == sorted(f"{i}.jpg" for i in frame["image_id"])
    for image_id in frame["image_id"]:
        with Image.open(out / IMAGES_DIRNAME / f"{image_id}.jpg") as im:
            assert im.format == "JPEG"
            assert im.size == SIZE_SMALL
            assert im.mode == "RGB"


def test_write_images_false_writes_only_metadata(full_metadata):
    out, frame = full_metadata
    assert (out / METADATA_FILENAME).is_file()
    assert not (out / IMAGES_DIRNAME).exists()
    assert len(frame) == 10015


# --------------------------------------------------------------------------------------------------
# Class, lesion and dx_type structure
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [56, 57, 120, 500, 2000, 10015, 20030])
def test_class_counts_sum_and_minimum(n):
    counts = class_image_counts(n)
    assert sum(counts.values()) == n
    assert min(counts.values()) >= MIN_IMAGES_PER_CLASS


def test_class_counts_equal_real_at_full_size(full_metadata):
    assert class_image_counts(10015) == REAL_IMAGES_PER_CLASS
    assert full_metadata[1]["dx"].value_counts().to_dict() == REAL_IMAGES_PER_CLASS
    assert class_image_counts(20030) == {k: 2 * v for k, v in REAL_IMAGES_PER_CLASS.items()}


def test_small_set_class_counts(small):
    counts = small[1]["dx"].value_counts()
    assert counts.sum() == N_SMALL
    assert counts.min() >= MIN_IMAGES_PER_CLASS
    assert counts.to_dict() == class_image_counts(N_SMALL)


def test_too_few_images_is_a_clear_error(tmp_path):
    with pytest.raises(PatchlesionError, match="at least 56"):
        make_synthetic_ham10000(tmp_path, n_images=55, write_images=False)


@pytest.mark.parametrize("which", ["small", "full_metadata"])
def test_lesions_have_1_to_6_consistent_images(which, request):
    frame = request.getfixturevalue(which)[1]
    groups = frame.groupby("lesion_id")
    assert groups.size().between(1, 6).all()
    # dropna=False: a missing age is the same for all images of the lesion too
    assert (groups[LESION_FIELDS].nunique(dropna=False) == 1).all().all()


def test_images_per_lesion_close_to_real(full_metadata):
    frame = full_metadata[1]
    lesions = frame.groupby("dx")["lesion_id"].nunique().to_dict()
    assert lesions == REAL_LESIONS_PER_CLASS
    sizes = frame.groupby("lesion_id").size()
    assert (sizes == 1).mean() == pytest.approx(5514 / 7470, abs=0.03)
    assert (sizes == 2).mean() == pytest.approx(1423 / 7470, abs=0.03)


def test_dx_type_only_values_allowed_for_the_class(small, full_metadata):
    for _, frame in (small, full_metadata):
        for dx, types in frame.groupby("dx")["dx_type"]:
            assert set(types) <= set(REAL_DX_TYPE_MIX[dx]), dx
        assert set(frame.loc[frame["dx"].isin(["mel", "bcc", "akiec"]), "dx_type"]) == {"histo"}
        assert set(frame.loc[frame["dx_type"] == "confocal", "dx"]) <= {"bkl"}
        assert set(frame.loc[frame["dx_type"] == "follow_up", "dx"]) <= {"nv"}


def test_dx_type_mix_matches_real_at_full_size(full_metadata):
    frame = full_metadata[1]
    for dx, mix in REAL_DX_TYPE_MIX.items():
        got = frame.loc[frame["dx"] == dx, "dx_type"].value_counts(normalize=True)
        total = sum(mix.values())
        for dx_type, count in mix.items():
            assert got.get(dx_type, 0.0) == pytest.approx(count / total, abs=0.03), (dx, dx_type)


# --------------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------------

def test_same_seed_is_identical_and_other_seed_differs(small, tmp_path):
    out, frame = small
    again = make_synthetic_ham10000(tmp_path / "same", n_images=N_SMALL, image_size=SIZE_SMALL, seed=SEED)
    assert (tmp_path / "same" / METADATA_FILENAME).read_bytes() == (out / METADATA_FILENAME).read_bytes()
    pd.testing.assert_frame_equal(again, frame)
    for image_id in frame["image_id"][:: max(1, N_SMALL // 15)]:
        np.testing.assert_array_equal(_load(tmp_path / "same", image_id), _load(out, image_id))

    other = make_synthetic_ham10000(
        tmp_path / "other", n_images=N_SMALL, image_size=SIZE_SMALL, seed=SEED + 1
    )
    assert (tmp_path / "other" / METADATA_FILENAME).read_bytes() != (out / METADATA_FILENAME).read_bytes()
    assert not other.equals(frame)
    some = frame["image_id"].iloc[0]
    assert not np.array_equal(_load(tmp_path / "other", some), _load(out, some))


def test_images_of_one_lesion_are_distinct_variants(small):
    out, frame = small
    sizes = frame.groupby("lesion_id").size()
    lesion = sizes[sizes > 1].index[0]
    ids = frame.loc[frame["lesion_id"] == lesion, "image_id"].tolist()
    first, second = _load(out, ids[0]).astype(float), _load(out, ids[1]).astype(float)
    assert np.abs(first - second).mean() > 2.0


# --------------------------------------------------------------------------------------------------
# The class signal: a fine luminance texture inside the lesion
# --------------------------------------------------------------------------------------------------

def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _lesion_and_skin(lum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the lesion core (darkest 10%) and of skin (brightest 30%) after a 12x12 box blur.

    A 12-pixel box averages out every texture period used (3, 4, 6), leaving the lesion's darkness.
    """
    k = 12
    c = np.pad(lum, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    blurred = (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)
    full = np.full(lum.shape, np.nan)
    full[k // 2:k // 2 + blurred.shape[0], k // 2:k // 2 + blurred.shape[1]] = blurred
    valid = full[~np.isnan(full)]
    with np.errstate(invalid="ignore"):
        return full <= np.quantile(valid, 0.10), full >= np.quantile(valid, 0.70)


def _lag_energy(lum: np.ndarray, mask: np.ndarray, axis: int, lag: int) -> float:
    """Mean squared difference between pixels ``lag`` apart along ``axis``, both inside ``mask``."""
    if axis == 0:
        a, b, ma, mb = lum[lag:], lum[:-lag], mask[lag:], mask[:-lag]
    else:
        a, b, ma, mb = lum[:, lag:], lum[:, :-lag], mask[:, lag:], mask[:, :-lag]
    both = ma & mb
    return float(np.mean((a - b)[both] ** 2))


def _periodic_excess(lum: np.ndarray, mask: np.ndarray, axis: int, period: int) -> float:
    """Energy at lag period/2 minus at lag period: ~2A^2 for a cosine of that period along ``axis``,
    ~0 for noise, and <= 0 for the other periods used (4 vs 6: E(2)-E(4) = 0 for period 6, and
    E(3)-E(6) < 0 for period 4)."""
    return _lag_energy(lum, mask, axis, max(1, period // 2)) - _lag_energy(lum, mask, axis, period)


_RULE = {("h", 4): "MEL", ("v", 4): "NV", ("c", 4): "BCC", ("h", 6): "AKIEC", ("v", 6): "BKL",
         ("c", 6): "DF", ("c", 3): "VASC"}


def _texture_class(lum: np.ndarray, mask: np.ndarray) -> str:
    """Read the class off the texture: best period, then direction (y-only, x-only or both)."""
    best = max(
        ((max(ex, ey), period, ex, ey)
         for period in (3, 4, 6)
         for ex, ey in [(_periodic_excess(lum, mask, 1, period), _periodic_excess(lum, mask, 0, period))]),
    )
    _, period, ex, ey = best
    direction = "h" if ey > 3 * ex else "v" if ex > 3 * ey else "c"
    return _RULE.get((direction, period), "?")


def test_rule_table_matches_textures():
    kinds = {"horizontal": "h", "vertical": "v", "checkerboard": "c", "diagonal": "c"}
    assert {(kinds[kind], period): cls for cls, (kind, period) in SYNTHETIC_TEXTURES.items()} == _RULE


def test_texture_is_inside_the_lesion_only(small):
    out, frame = small
    for row in frame.groupby("dx").head(3).itertuples():
        lum = _luminance(_load(out, row.image_id))
        lesion, skin = _lesion_and_skin(lum)
        _, period = SYNTHETIC_TEXTURES[DX_TO_CLASS[row.dx]]
        inside = max(_periodic_excess(lum, lesion, a, period) for a in (0, 1))
        outside = max(_periodic_excess(lum, skin, a, period) for a in (0, 1))
        # amplitude 0.1 on 0..255 gives about 1300 inside (energy scales with amplitude^2); only noise outside
        assert inside > 400 * (TEXTURE_AMPLITUDE / 0.1) ** 2, row
        assert inside > 20 * max(outside, 1.0), row


def test_stripe_direction(small):
    out, frame = small
    for row in frame[frame["dx"].isin(["mel", "akiec", "nv", "bkl"])].itertuples():
        lum = _luminance(_load(out, row.image_id))
        lesion, _ = _lesion_and_skin(lum)
        _, period = SYNTHETIC_TEXTURES[DX_TO_CLASS[row.dx]]
        along_y = _periodic_excess(lum, lesion, 0, period)
        along_x = _periodic_excess(lum, lesion, 1, period)
        if row.dx in ("mel", "akiec"):  # horizontal stripes: luminance varies along y
            assert along_y > 5 * max(along_x, 1.0), row
        else:
            assert along_x > 5 * max(along_y, 1.0), row


def test_texture_identifies_the_class_even_after_flips(small):
    out, frame = small
    right = 0
    for i, row in enumerate(frame.itertuples()):
        lum = _luminance(_load(out, row.image_id))
        if i % 3 == 1:
            lum = lum[:, ::-1]
        elif i % 3 == 2:
            lum = lum[::-1, :]
        lesion, _ = _lesion_and_skin(lum)
        right += _texture_class(lum, lesion) == DX_TO_CLASS[row.dx]
    assert right >= 0.95 * len(frame)


@pytest.mark.parametrize("cls", sorted(SYNTHETIC_TEXTURES))
def test_texture_pattern_is_flip_invariant_up_to_phase(cls):
    """A flipped texture is the same texture with another phase: its spectrum's magnitude is equal."""
    width, height = 72, 60  # multiples of every period, so the FFT bins are exact
    pattern = texture_pattern(cls, width, height, (0.3, 1.1))
    spectrum = np.abs(np.fft.fft2(pattern))
    for flipped in (pattern[:, ::-1], pattern[::-1, :]):
        np.testing.assert_allclose(np.abs(np.fft.fft2(flipped)), spectrum, atol=1e-2 * spectrum.max())
    assert np.sqrt(np.mean(pattern.astype(float) ** 2)) == pytest.approx(np.sqrt(0.5), rel=0.02)


def test_a_synthesis_cut_short_leaves_no_metadata(tmp_path, monkeypatch):
    """The metadata is written last (and whole): a folder whose images were cut short is never read as a dataset."""
    saved = []

    def save(self, path, *args, **kwargs):
        if len(saved) == 5:
            raise KeyboardInterrupt  # the run is killed after five images
        saved.append(path)
        Path(path).write_bytes(b"jpeg")

    monkeypatch.setattr(Image.Image, "save", save)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_ham10000(tmp_path / "data", n_images=60, image_size=(32, 24), seed=0)
    assert len(saved) == 5 and sorted(p.name for p in (tmp_path / "data").iterdir()) == ["HAM10000_images"]
