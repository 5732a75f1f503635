"""User-facing errors: each names the file, row or key at fault and says what to do next."""


class PatchlesionError(Exception):
    """An error caused by the user's input (config, metadata, images, archives), not by a bug.

    The command-line interface prints its message without a traceback and exits with status 2.
    """


class DatasetError(PatchlesionError):
    """A HAM10000-format directory (metadata or images) is missing something or is unreadable."""


class SplitError(PatchlesionError):
    """A data split is inconsistent with the dataset (missing images, lesion leakage, ...)."""
