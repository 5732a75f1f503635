"""Running the method: training settings (:mod:`.settings`), the training loop (:mod:`.training`),
training batches (:mod:`.batches`), device and precision choices (:mod:`.accel`), resumable
checkpoints (:mod:`.checkpoint`), a GPU (slot) per job (:mod:`.gpulease`), inference
(:mod:`.inference`), and the jobs built on it: test-part evaluation (:mod:`.evaluate`), the official
test set (:mod:`.official_test`) and prediction on any images (:mod:`.predict`); the cost plan of a
grid (:mod:`.grid`, :mod:`.cost`, :mod:`.steptimes`, :mod:`.costplan`).

May import: :mod:`patchlesion.method`, :mod:`patchlesion.data`, :mod:`patchlesion.results` and the
shared modules; never ``cli``.
"""
