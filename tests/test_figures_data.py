"""What the figures plot, read back from the matplotlib Figure before it is saved: Fig. 4's panels,
the confusion matrix's colours and counts, the training curves' lines, and the data
``patchlesion table-figures`` feeds them (the best run's summed confusion, fold-mean histories).
Expected values are worked out by hand in each test."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from patchlesion.cli import main  # noqa: E402

# Product code: the figures module (its save_figure is wrapped to catch each Figure) and the CLI.
from patchlesion.results import figures as figures_module  # noqa: E402


@pytest.fixture
def drawn(monkeypatch):
    """Every Figure the figure functions save, in order (still saved to disk as usual)."""
    caught = []
    real_save = figures_module.save_figure

    def catching_save(fig, out):
        caught.append(fig)
        return real_save(fig, out)

    monkeypatch.setattr(figures_module, "save_figure", catching_save)
    return caught


def _panels(fig):
    """The image panels (axes holding an image), row-major, without the colour bar."""
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def test_figure4_panels_show_each_image_with_its_own_weights(drawn, tmp_path):
    crop, size = 16, (40, 32)  # (W, H)
    positions = [(0, 0), (0, 24), (16, 0), (16, 24)]  # (row, col) top-left corners, 4 crops
    classes = ["NV", "MEL", "NV", "BCC"]  # rows follow CLASSES: MEL, NV, BCC
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8) for _ in classes]
    weights = np.array([[0.10, 0.20, 0.30, 0.40], [0.90, 0.05, 0.15, 0.25], [0.55, 0.65, 0.75, 0.85], [0.33, 0.44, 0.12, 0.99]])
    predicted = ["NV", "BKL", "MEL", "BCC"]
    figures_module.figure4(images, positions, crop, weights, classes, tmp_path / "fig4", "Fig. 4", predicted_classes=predicted)
    (fig,) = drawn

    # Grid: rows MEL (image 1), NV (images 0, 2), BCC (image 3); 2 columns.
    panels = _panels(fig)
    assert len(panels) == 4
    expected_order = [1, 0, 2, 3]
    expected_rows = ["MEL", "NV", "", "BCC"]
    viridis = colormaps["viridis"]
    for ax, i, row_label in zip(panels, expected_order, expected_rows):
        np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), images[i])
        assert ax.get_title() == f"predicted {predicted[i]}"
        assert ax.get_ylabel() == row_label
        borders = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert len(borders) == 4
        for rect in borders:  # which crop: its centre; its colour: viridis of that crop's weight over [0, 1]
            cx, cy = rect.get_x() + rect.get_width() / 2, rect.get_y() + rect.get_height() / 2
            j = positions.index((round(cy + 0.5 - crop / 2), round(cx + 0.5 - crop / 2)))
            np.testing.assert_allclose(rect.get_edgecolor(), viridis(weights[i, j]), atol=1e-6)
        labels = {(round(t.get_position()[1] + 0.5 - crop / 2), round(t.get_position()[0] + 0.5 - crop / 2)): t.get_text() for t in ax.texts}
        assert labels == {positions[j]: f"{weights[i, j]:.2f}" for j in range(4)}
    # the 3 x 2 grid, row-major: MEL and BCC have one image each, so their second slots are empty
    assert [ax.axison for ax in fig.axes[:6]] == [True, False, True, True, True, False]
    assert fig._suptitle.get_text() == "Fig. 4"


def test_confusion_matrix_figure_plots_row_fractions_and_counts(drawn, tmp_path):
    cm = np.array([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    figures_module.confusion_matrix_figure(cm, ["A", "B", "C"], tmp_path / "cm", "fold 1")
    (fig,) = drawn
    ax = fig.axes[0]
    by_hand = [[0.75, 0.25, 0.0], [0.0, 0.0, 0.0], [0.25, 0.25, 0.5]]  # each row over its total; B has none
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), by_hand)
    cells = {tuple(np.round(t.get_position()).astype(int)): (t.get_text(), t.get_color()) for t in ax.texts}
    assert {pos: text for pos, (text, _) in cells.items()} == {
        (0, 0): "3", (1, 0): "1", (2, 0): "0", (0, 1): "0", (1, 1): "0", (2, 1): "0", (0, 2): "2", (1, 2): "2", (2, 2): "4",
    }  # (column = predicted, row = true): "count"
    assert cells[(0, 0)][1] == "white" and cells[(2, 2)][1] == "black"  # white only above a fraction of 0.5
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B", "C"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B", "C"]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class" and ax.get_title() == "fold 1"


def _twin(fig, ax):
    return next(other for other in fig.axes if other is not ax and other.get_position().bounds == ax.get_position().bounds)


def test_training_curves_plot_loss_and_validated_epochs(drawn, tmp_path):
    nan = float("nan")
    histories = {
        "run a": pd.DataFrame({"epoch": [1, 2, 3, 4, 5, 6], "train_loss": [2.0, 1.5, 1.2, 1.0, 0.9, 0.8],
                               "val_mc_sensitivity": [0.2, nan, 0.4, nan, nan, 0.55]}),
        "run b": pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.9, 1.7, 1.6], "val_mc_sensitivity": [0.1, 0.3, nan]}),
    }  # fmt: skip
    figures_module.training_curves(histories, tmp_path / "curves", "Training")
    (fig,) = drawn
    expected = {"run a": ([1, 2, 3, 4, 5, 6], [2.0, 1.5, 1.2, 1.0, 0.9, 0.8], [1, 3, 6], [0.2, 0.4, 0.55]),
                "run b": ([1, 2, 3], [1.9, 1.7, 1.6], [1, 2], [0.1, 0.3])}  # fmt: skip
    titled = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(titled) == set(expected)
    for label, (epochs, loss, val_epochs, val) in expected.items():
        ax = titled[label]
        (loss_line,) = ax.lines
        np.testing.assert_array_equal(loss_line.get_xdata(), epochs)
        np.testing.assert_allclose(loss_line.get_ydata(), loss)
        (val_line,) = _twin(fig, ax).lines
        np.testing.assert_array_equal(val_line.get_xdata(), val_epochs)
        np.testing.assert_allclose(val_line.get_ydata(), val)
        assert _twin(fig, ax).get_ylim() == (0.0, 1.0)


def test_table_figures_plot_the_best_runs_summed_confusion_and_fold_mean_curves(drawn, tmp_path):
    """Two runs, two folds each; run B has the higher mean MC-sensitivity (0.6 against 0.5)."""
    runs = {"tiny-multi_crop-nc9-mean-none": [0.5, 0.5], "tiny-multi_crop-nc4-mean-none": [0.7, 0.5]}
    eye = np.eye(7, dtype=int)
    paths = []
    for r, (run, sensitivities) in enumerate(runs.items()):
        for fold, value in enumerate(sensitivities, start=1):
            folder = tmp_path / run / f"fold{fold}"
            folder.mkdir(parents=True)
            cm = (fold + 10 * r) * eye + np.roll(eye, 1, axis=1)  # diagonal fold + 10 r, one miss per class
            (folder / "metrics.json").write_text(json.dumps({"run": run, "fold": fold, "mc_sensitivity": value, "confusion_matrix": cm.tolist()}))
            pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0 * fold, 1.0 * fold], "val_mc_sensitivity": [0.1 * fold, 0.2 * fold]}).to_csv(
                folder / "history.csv", index=False
            )
            paths.append(str(folder / "metrics.json"))
    args = ["table-figures", "--table", "II", "--metrics", *paths, "--confusion", str(tmp_path / "cm.png"), "--curves", str(tmp_path / "curves.png")]
    assert main(args) == 0
    confusion_fig, curves_fig = drawn
    # best run = nc4 (r = 1): folds' diagonals 11 + 12 = 23, off-diagonal 1 + 1 = 2; fractions 23/25, 2/25
    ax = confusion_fig.axes[0]
    counts = {tuple(np.round(t.get_position()).astype(int)): t.get_text() for t in ax.texts}
    assert counts[(0, 0)] == "23" and counts[(1, 0)] == "2" and counts[(0, 1)] == "0" and counts[(0, 6)] == "2"
    fractions = np.asarray(ax.images[0].get_array())
    assert fractions[0, 0] == pytest.approx(23 / 25) and fractions[0, 1] == pytest.approx(2 / 25)
    assert "tiny-multi_crop-nc4-mean-none" in ax.get_title()
    # curves: the mean over the two folds: loss (2 + 4) / 2 = 3, (1 + 2) / 2 = 1.5; val 0.15, 0.3
    titled = {a.get_title(): a for a in curves_fig.axes if a.get_title()}
    assert len(titled) == 2
    for a in titled.values():
        np.testing.assert_allclose(a.lines[0].get_ydata(), [3.0, 1.5])
        np.testing.assert_allclose(_twin(curves_fig, a).lines[0].get_ydata(), [0.15, 0.3])
