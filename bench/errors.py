"""User-facing errors: the CLI prints them as one line, without a traceback."""


class BenchError(Exception):
    """A problem the user can fix: the message names the file or field and says how."""


class NotPreparedError(BenchError):
    """A dataset is declared but not prepared under the data root."""


class UnavailableError(BenchError):
    """Something optional (weights, a package) is missing; the message lists what to install where."""
