"""One exception type for every user-facing failure: the CLI prints its message and exits 1."""


class Sam3TvmError(Exception):
    """A clear, user-facing error (bad input, missing file, mismatch)."""
