"""Datasets on disk: reading and checking them, splitting them, and the decoded image cache.

One home for decoding and resizing an image (:mod:`.images`); the dataset readers
(:mod:`.ham10000`, :mod:`.derm7pt`, :mod:`.isic2018`) and the synthetic HAM10000-like dataset
(:mod:`.synthetic`); the stratified 4-way split and the authors' published splits (:mod:`.splits`);
the decoded uint8 cache that training reads (:mod:`.cache`). :mod:`.acquire` gets the datasets onto
disk (downloads, Dataverse, archives). The shipped CSVs are the authors' published splits.

May import: :mod:`patchlesion.method` (the class set) and the shared modules
(:mod:`patchlesion.errors`, :mod:`patchlesion.provenance`); never ``engine``, ``results`` or ``cli``.
"""

#: How an image of another aspect ratio than the configured image size is brought to that size
#: (:func:`patchlesion.data.images.decode_file`): ``stretch`` each side to its target, as the paper;
#: ``crop`` to the largest centred box of the target's aspect ratio first. Here, import-free, so that
#: the settings and the command-line parser name the choices without loading the data modules.
RESIZES = ("stretch", "crop")
