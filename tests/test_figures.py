"""Figures (Fig. 4, Fig. 5, confusion matrix, training curves): files written, colours and lines as meant."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from patchlesion.method.classes import CLASSES  # noqa: E402
from patchlesion.method.crops import crop_grid  # noqa: E402
from patchlesion.results.figures import (  # noqa: E402
    attention_overlay,
    confusion_matrix_figure,
    figure4,
    figure5,
    plot_dropout_sensitivity,
    training_curves,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_written(paths, stem):
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
    for path in paths:
        assert path.is_file() and path.stat().st_size > 1024, path
        assert path.with_suffix("") == stem
    png = next(p for p in paths if p.suffix == ".png")
    pdf = next(p for p in paths if p.suffix == ".pdf")
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert pdf.read_bytes()[:5] == b"%PDF-"


def _image(seed=0, size=(96, 72)):
    rng = np.random.default_rng(seed)
    return rng.integers(90, 160, size=(size[1], size[0], 3), dtype=np.uint8)


def _dropout_frame():
    rows = []
    for n_crops in (4, 9, 16):
        for p_d in (0.0, 0.1, 0.2, 0.3):
            rows.append({"p_d": p_d, "n_crops": n_crops, "mean": 70 + n_crops / 4 - 10 * p_d, "std": 1.0 + p_d})
    return pd.DataFrame(rows)


def test_attention_overlay_colours_borders_by_weight():
    image = np.full((72, 96, 3), 128, dtype=np.uint8)  # plain grey, so only the borders carry colour
    positions = crop_grid(4, (96, 72), 32)  # rows 0, 40; cols 0, 64: crops do not overlap
    weights = np.array([0.05, 0.5, 0.5, 0.95])
    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    mappable = attention_overlay(ax, image, positions, 32, weights, linewidth=3, annotate=False)
    fig.canvas.draw()
    canvas = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    height = canvas.shape[0]

    def pixel(x, y):  # data coordinates -> the rendered canvas pixel
        dx, dy = ax.transData.transform((x, y))
        return canvas[int(round(height - dy)), int(round(dx))]

    # right border of crop 0 (weight 0.05) and left border of crop 3 (weight 0.95), mid-height;
    # the border sits half a line inside the crop, so sample just inside the crop edge
    (r0, c0), (r3, c3) = positions[0], positions[3]
    low = pixel(c0 + 32 - 1.5, r0 + 16)
    high = pixel(c3 + 0.5, r3 + 16)
    grey = pixel(48, 36)  # between the crops
    assert np.abs(low - high).sum() > 100, (low, high)
    assert np.abs(low - grey).sum() > 60 and np.abs(high - grey).sum() > 60, (low, high, grey)
    # colours follow the [0, 1] colormap: low weight dark purple (viridis), high weight yellow
    expected_low = np.array(mappable.to_rgba(0.05)[:3]) * 255
    expected_high = np.array(mappable.to_rgba(0.95)[:3]) * 255
    assert np.abs(low - expected_low).max() < 40 and np.abs(high - expected_high).max() < 40, (low, high)
    assert mappable.norm.vmin == 0.0 and mappable.norm.vmax == 1.0
    plt.close(fig)


def test_attention_overlay_checks_the_number_of_weights():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="3 attention weights for 4 crops"):
        attention_overlay(ax, _image(), crop_grid(4, (96, 72), 32), 32, [0.1, 0.2, 0.3])
    plt.close(fig)


def test_figure4_writes_png_and_pdf(tmp_path):
    positions = crop_grid(9, (96, 72), 32)
    classes = ["MEL", "NV", "NV", "BCC", "MEL"]
    images = [_image(i) for i in range(len(classes))]
    weights = np.random.default_rng(0).uniform(size=(len(classes), 9))
    stem = tmp_path / "fig4" / "figure4"
    paths = figure4(images, positions, 32, weights, classes, stem, "Fig. 4", predicted_classes=["MEL", "NV", "BKL", "BCC", "NV"])
    _check_written(paths, stem)


def test_figure5_one_line_per_number_of_crops(tmp_path):
    frame = _dropout_frame()
    fig, ax = plt.subplots()
    plot_dropout_sensitivity(ax, frame)
    bars = ax.containers  # one error-bar line per NC, labelled for the legend
    assert [bar.get_label() for bar in bars] == ["NC = 4", "NC = 9", "NC = 16"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["NC = 4", "NC = 9", "NC = 16"]
    data_lines = [bar.lines[0] for bar in bars]
    assert len(set(data_lines)) == 3 and all(line in ax.lines for line in data_lines)
    x, y = data_lines[1].get_data()
    assert list(x) == [0.0, 0.1, 0.2, 0.3] and y[0] == pytest.approx(72.25)
    assert "%" in ax.get_ylabel()
    plt.close(fig)
    # fractions are shown in percent
    fig, ax = plt.subplots()
    plot_dropout_sensitivity(ax, frame.assign(mean=frame["mean"] / 100, std=frame["std"] / 100))
    assert ax.containers[0].lines[0].get_ydata()[0] == pytest.approx(71.0)
    plt.close(fig)
    stem = tmp_path / "figure5"
    _check_written(figure5(frame, stem), stem)


def test_figure5_explicit_paths(tmp_path):
    paths = figure5(_dropout_frame(), [tmp_path / "a.png", tmp_path / "b" / "c.pdf"])
    assert [p.name for p in paths] == ["a.png", "c.pdf"] and all(p.stat().st_size > 1024 for p in paths)
    with pytest.raises(ValueError, match="svg"):
        figure5(_dropout_frame(), [tmp_path / "a.svg"])


def test_confusion_matrix_figure(tmp_path):
    rng = np.random.default_rng(1)
    cm = rng.integers(0, 50, size=(7, 7))
    cm[5] = 0  # a class without test images: no division by zero
    stem = tmp_path / "cm.png"  # a .png suffix is dropped from the stem
    paths = confusion_matrix_figure(cm, list(CLASSES), stem, "fold 1")
    _check_written(paths, tmp_path / "cm")


def test_training_curves(tmp_path):
    epochs = np.arange(1, 11)
    histories = {}
    for k, label in enumerate(["multi-crop", "ordered + attention", "downsample", "single-crop"]):
        val = np.where((epochs == 1) | (epochs % 5 == 0), 0.3 + 0.04 * epochs + 0.01 * k, np.nan)
        histories[label] = pd.DataFrame({"epoch": epochs, "train_loss": 2.0 / epochs, "val_mc_sensitivity": val})
    stem = tmp_path / "curves"
    _check_written(training_curves(histories, stem, "Training"), stem)
