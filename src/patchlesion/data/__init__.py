"""Datasets on disk: reading and checking them, splitting them, and the decoded image cache.

One home for decoding and resizing an image (:mod:`.images`); the dataset readers
(:mod:`.ham10000`, :mod:`.derm7pt`, :mod:`.isic2018`) and the synthetic HAM10000-like dataset
(:mod:`.synthetic`); the stratified 4-way split and the authors' published splits (:mod:`.splits`);
the decoded uint8 cache that training reads (:mod:`.cache`). :mod:`.acquire` gets the datasets onto
disk (downloads, Dataverse, archives). The shipped CSVs are the authors' published splits.

May import: :mod:`patchlesion.method` (the class set) and the shared modules
(:mod:`patchlesion.errors`, :mod:`patchlesion.provenance`); never ``engine``, ``results`` or ``cli``.
"""
