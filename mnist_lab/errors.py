"""The package's one exception for bad data."""


class DataError(Exception):
    """A data file is missing, truncated, corrupt or not what it claims to be.

    The message is one line that names the file and the problem.
    """
