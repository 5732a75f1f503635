"""Synthetic folder datasets for the tests (docs/own-data.md §1): images of any size, PNG and JPEG,
flat and nested, and a labels CSV naming each by id or by relative path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: Class names of the 3- and 9-class test datasets (none of them a HAM10000 class).
THREE = ("cat", "dog", "eel")
NINE = tuple(f"type{i}" for i in range(1, 10))


def write_folder_dataset(root: Path, classes: tuple[str, ...], per_class: int, seed: int = 0, header: str = "file,diagnosis") -> Path:
    """A folder dataset below ``root``: ``per_class`` images per class, each a class-coloured blob on
    noise (so that a model can learn something) at one of three sizes; even images are JPEG in the
    top folder named by id, odd ones PNG in a class subfolder named by relative path (every third)
    or by id. Returns the labels CSV (columns ``file``, ``diagnosis``)."""
    rng = np.random.default_rng(seed)
    rows = [header]
    sizes = ((80, 60), (100, 75), (64, 64))
    for i in range(per_class * len(classes)):
        label = i % len(classes)
        width, height = sizes[i % 3]
        pixels = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
        colour = np.array([(37 * label) % 256, (91 * label + 60) % 256, (150 + 53 * label) % 256], dtype=np.uint8)
        pixels[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = colour
        if i % 2 == 0:
            relative = Path("images") / f"img{i:03d}.jpg"
        else:
            relative = Path("images") / classes[label] / "deeper" / f"img{i:03d}.png"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / relative)
        name = relative.as_posix() if i % 3 == 1 else relative.stem
        rows.append(f"{name},{classes[label]}")
    path = root / "labels.csv"
    path.write_text("\n".join(rows) + "\n")
    return path
