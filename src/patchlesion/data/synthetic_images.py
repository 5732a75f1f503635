"""Images of the synthetic HAM10000-like dataset: the class textures, lesion shapes and colours
(the design and its measured reasons are in the comments), rendered by :func:`render_lesion`.
"""

from __future__ import annotations

import math

import numpy as np

# --------------------------------------------------------------------------------------------------
# Image design
# --------------------------------------------------------------------------------------------------

#: Class -> (pattern, period in pixels of the written image).  Patterns (phase random per image):
#: ``"horizontal"`` stripes cos(2 pi y / p) (luminance varies along y), ``"vertical"`` stripes
#: cos(2 pi x / p), ``"checkerboard"`` cos(2 pi x / p) cos(2 pi y / p), ``"diagonal"`` cross-hatch
#: cos(2 pi (x + y) / p) + cos(2 pi (x - y) / p).  All are invariant, up to phase, to horizontal and
#: vertical flips.  Note cos(a + b) + cos(a - b) = 2 cos(a) cos(b): a diagonal cross-hatch *is* a
#: checkerboard of the same axis period, so VASC gets its own period (3) rather than BCC's 4; with
#: the period measured across the diagonal stripes instead, period 4 would sit at axis frequency
#: 1/(4 sqrt 2) ~ 0.177 cycles/px, indistinguishable in small patches from DF's 1/6 ~ 0.167.
#: Measured share of texture RMS left after a 3x PIL downsample (box / antialiased bilinear):
#: period 3 ~0 / ~0.01, period 4 ~0.33 / ~0.11, period 6 ~0.47-0.70 / ~0.32 (aliased, not removed);
#: periods <= 3 are needed for the texture to vanish at 3x.
SYNTHETIC_TEXTURES: dict[str, tuple[str, float]] = {
    "MEL": ("horizontal", 4),
    "NV": ("vertical", 4),
    "BCC": ("checkerboard", 4),
    "AKIEC": ("horizontal", 6),
    "BKL": ("vertical", 6),
    "DF": ("checkerboard", 6),
    "VASC": ("diagonal", 3),
}
#: Peak amplitude of stripe textures on the 0..1 scale; the 2-D patterns are scaled to the same RMS
#: (amplitude / sqrt 2) so that texture energy alone does not identify a class.
TEXTURE_AMPLITUDE = 0.06
#: Standard deviation of the per-pixel, per-channel Gaussian noise on the 0..1 scale.
NOISE_SIGMA = 0.05
#: Small class-dependent shift of the lesion's mean RGB colour on the 0..1 scale (the weak cue that
#: survives downsampling).  At most 0.015 per channel, against LESION_COLOUR_JITTER below.
CLASS_COLOUR_SHIFT: dict[str, tuple[float, float, float]] = {
    "MEL": (-0.010, -0.010, 0.010),
    "NV": (0.010, 0.005, -0.005),
    "BCC": (0.000, -0.010, 0.010),
    "AKIEC": (0.015, -0.005, -0.005),
    "BKL": (0.010, 0.010, 0.000),
    "DF": (0.010, -0.010, 0.000),
    "VASC": (0.015, -0.015, 0.005),
}
#: Per-lesion relative standard deviation of each channel of the lesion colour, on top of a random
#: mixture of the dermoscopic palette below and a darkness factor; together they swamp
#: CLASS_COLOUR_SHIFT.  Kept small so that hues stay plausible (no green or purple lesions).
LESION_COLOUR_JITTER = 0.03

_SKIN_RGB = np.array([0.86, 0.68, 0.58], dtype=np.float32)
# Lesion palette (light brown, dark brown, reddish, blue-grey), mixed per lesion with Dirichlet weights.
_LESION_PALETTE = np.array(
    [[0.58, 0.38, 0.27], [0.32, 0.19, 0.13], [0.66, 0.36, 0.36], [0.42, 0.40, 0.46]], dtype=np.float32)
_LESION_PALETTE_ALPHA = (2.0, 1.5, 0.5, 0.5)
_AREA_FRACTION_RANGE = (0.10, 0.40)
_CENTRE_OFFSET_SD = 0.10   # fraction of the frame size
_CENTRE_OFFSET_MAX = 0.20  # clip, so the lesion stays mostly inside the frame
_SCALE_JITTER = 0.10
_BRIGHTNESS_JITTER = 0.08
_EDGE_SOFTNESS = 0.06      # width of the soft edge, as a fraction of the local radius

_PATTERNS = ("horizontal", "vertical", "checkerboard", "diagonal")


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------

def texture_pattern(class_name: str, width: int, height: int, phase: tuple[float, float]) -> np.ndarray:
    """The class texture as a ``(height, width)`` float32 array with RMS 1/sqrt(2) (stripes: peak 1)."""
    pattern, period = SYNTHETIC_TEXTURES[class_name]
    w = np.float32(2.0 * np.pi / period)
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    p0, p1 = np.float32(phase[0]), np.float32(phase[1])
    if pattern == "horizontal":
        out = np.cos(w * y + p0) + np.zeros_like(x)
    elif pattern == "vertical":
        out = np.cos(w * x + p0) + np.zeros_like(y)
    elif pattern == "checkerboard":
        out = np.float32(np.sqrt(2.0)) * np.cos(w * y + p0) * np.cos(w * x + p1)
    elif pattern == "diagonal":
        out = (np.cos(w * (x + y) + p0) + np.cos(w * (x - y) + p1)) / np.float32(np.sqrt(2.0))
    else:  # pragma: no cover - guarded by the constant's definition
        raise ValueError(f"unknown texture pattern {pattern!r}; expected one of {_PATTERNS}")
    return out.astype(np.float32, copy=False)


def lesion_params(class_name: str, rng: np.random.Generator) -> dict:
    """What all images of one synthetic lesion share: shape, colours, skin tone."""
    lo, hi = _AREA_FRACTION_RANGE
    return {
        "class": class_name,
        "area": rng.uniform(lo, hi),
        "aspect": rng.uniform(0.6, 1.0),
        "angle": rng.uniform(0.0, np.pi),
        # Radial harmonics 2..5 make the outline irregular.
        "harm_amp": rng.uniform(0.0, 0.12, size=4) / np.arange(1, 5),
        "harm_phase": rng.uniform(0.0, 2 * np.pi, size=4),
        "skin": (_SKIN_RGB * rng.uniform(0.85, 1.05) * (1.0 + rng.normal(0.0, 0.03, 3))).astype(np.float32),
        "lesion": (rng.dirichlet(_LESION_PALETTE_ALPHA) @ _LESION_PALETTE * rng.uniform(0.75, 1.15)
                   * (1.0 + rng.normal(0.0, LESION_COLOUR_JITTER, 3))
                   + np.asarray(CLASS_COLOUR_SHIFT[class_name])).astype(np.float32),
        "core_dark": rng.uniform(0.0, 0.35),
    }


def _gaussian(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 samples by Box-Muller (about 3x faster than the ziggurat here)."""
    n = int(np.prod(shape))
    half = (n + 1) // 2
    buf = np.empty(2 * half, dtype=np.float32)
    rng.random(out=buf, dtype=np.float32)
    # In place throughout: fresh megabyte-sized temporaries cost more (page faults) than the maths.
    r, t = buf[:half], buf[half:]
    np.subtract(np.float32(1.0), r, out=r)  # (0, 1]: the log is finite
    np.log(r, out=r)
    r *= np.float32(-2.0)
    np.sqrt(r, out=r)
    t *= np.float32(2.0 * np.pi)
    cos_t = np.cos(t)
    np.sin(t, out=t)
    t *= r
    np.multiply(r, cos_t, out=r)
    return buf[:n].reshape(shape)


def render_lesion(params: dict, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """One ``(height, width, 3)`` uint8 image of a lesion (fresh position, scale, brightness, noise)."""
    # Work on (H, W) planes, one per channel: numpy broadcasting over a trailing axis of length 3 is
    # an order of magnitude slower than plane-wise arithmetic.
    f32 = np.float32
    x = np.arange(width, dtype=f32)[None, :]
    y = np.arange(height, dtype=f32)[:, None]

    # Background shading: two plane waves of period >= the frame size, each evaluated separably as
    # cos(ax + by + p) = cos(ax + p) cos(by) - sin(ax + p) sin(by).
    shade = np.ones((height, width), dtype=f32)
    for _ in range(2):
        kx, ky = rng.uniform(-1.0, 1.0, 2) * (2 * np.pi) / np.array([width, height])
        amp, ph = f32(rng.uniform(0.02, 0.05)), f32(rng.uniform(0, 2 * np.pi))
        ax, by = f32(kx) * x + ph, f32(ky) * y
        shade += amp * (np.cos(ax) * np.cos(by) - np.sin(ax) * np.sin(by))

    # Lesion outline: rotated ellipse with radial harmonics; rho = distance / local radius.
    scale = rng.uniform(1.0 - _SCALE_JITTER, 1.0 + _SCALE_JITTER)
    a = math.sqrt(params["area"] * width * height / (math.pi * params["aspect"])) * scale
    b = a * params["aspect"]
    off = np.clip(rng.normal(0.0, _CENTRE_OFFSET_SD, 2), -_CENTRE_OFFSET_MAX, _CENTRE_OFFSET_MAX)
    cx, cy = width * (0.5 + off[0]), height * (0.5 + off[1])
    dx, dy = x - f32(cx), y - f32(cy)
    ca, sa = f32(math.cos(params["angle"])), f32(math.sin(params["angle"]))
    u, v = (dx * ca + dy * sa) / f32(a), (dy * ca - dx * sa) / f32(b)
    rho = np.sqrt(u * u + v * v) + f32(1e-6)
    theta = np.arctan2(v, u)
    wobble = np.ones_like(rho)
    for k in range(4):
        wobble += f32(params["harm_amp"][k]) * np.cos(f32(k + 2) * theta + f32(params["harm_phase"][k]))
    rho /= wobble
    # Soft edge: logistic in rho (exp overflowing to inf far outside gives mask 0, as intended).
    with np.errstate(over="ignore"):
        mask = f32(1.0) / (f32(1.0) + np.exp((rho - f32(1.0)) / f32(_EDGE_SOFTNESS)))
    core = f32(1.0) - f32(params["core_dark"]) * np.clip(f32(1.0) - rho, f32(0.0), f32(1.0))

    # Class texture on luminance (the same offset on R, G and B), inside the lesion only.
    phase = tuple(rng.uniform(0.0, 2 * np.pi, 2))
    tex = f32(TEXTURE_AMPLITUDE) * texture_pattern(params["class"], width, height, phase) * mask
    brightness = f32(1.0 + rng.uniform(-_BRIGHTNESS_JITTER, _BRIGHTNESS_JITTER))
    noise = _gaussian(rng, (3, height, width))
    noise *= f32(NOISE_SIGMA)

    out = np.empty((height, width, 3), dtype=np.uint8)
    for c in range(3):
        skin = f32(params["skin"][c]) * shade
        plane = skin + mask * (f32(params["lesion"][c]) * core - skin)
        plane += tex
        plane *= brightness
        plane += noise[c]
        np.clip(plane, f32(0.0), f32(1.0), out=plane)
        plane *= f32(255.0)
        plane += f32(0.5)
        out[:, :, c] = plane  # float -> uint8 truncation after +0.5 rounds
    return out


