"""The error type the ``sim`` command line reports as one line, without a traceback."""


class SimError(Exception):
    """Bad input or an impossible request (bad parameter, unusable path, ...)."""
