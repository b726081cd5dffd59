"""User-facing errors: the CLI prints them as one line, without a traceback."""


class BenchError(Exception):
    """A problem the user can fix: the message names the file or field and says how."""


class NotPreparedError(BenchError):
    """A dataset is declared but not prepared under the data root."""


class UnavailableError(BenchError):
    """Something optional (weights, a package) is missing; the message lists what to install where.

    weights: the catalogue name of the missing checkpoint, when that is what is missing (so a later run can tell
    that it has appeared and point to ``bench rescore``).
    """

    def __init__(self, message: str, weights: str | None = None):
        super().__init__(message)
        self.weights = weights
