"""patchlesion: reference implementation of Gessert et al., "Skin Lesion Classification Using CNNs
with Patch-Based Attention and Diagnosis-Guided Loss Weighting" (IEEE TBME 2019).

The science lives here as plain importable modules with no Snakemake inside; the workflow in
``workflow/`` calls the command-line interface (``patchlesion --help``).
"""

__version__ = "0.1.0"
