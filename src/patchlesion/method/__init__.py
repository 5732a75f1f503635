"""The method of Gessert et al. 2019, free of data handling and training loops.

What a run is (:mod:`.runs`), the class set (:mod:`.classes`), the crop grids (:mod:`.crops`) and
augmentation (:mod:`.augment`), and the four axes of the experiment grid, each a registry with one
idiom (:mod:`.registry`): backbones (:mod:`.backbones`, ImageNet weights in :mod:`.weights`), input
strategies (:mod:`.strategies`), aggregation with the attention places (:mod:`.aggregation`, its
torch modules in :mod:`.heads`) and class balancing (:mod:`.balancing`); :mod:`.model` puts a run's
choices together into one network.

May import: :mod:`patchlesion.errors` and itself only (never ``data``, ``engine``, ``results`` or
``cli``; checked by the import-linter contracts in pyproject.toml).
"""
