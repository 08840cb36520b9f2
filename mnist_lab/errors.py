"""The package's exceptions for bad input: the command line maps these, and only these, to a one-line error."""


class DataError(Exception):
    """A data file is missing, truncated, corrupt or not what it claims to be.

    The message is one line that names the file and the problem.
    """


class InputError(ValueError):
    """An argument the package refuses (a device, a recipe, a data set's size, an index).

    The message is one line that names the argument and what is wrong with it.
    """
