"""Errors a user can cause: each one ends in one clear line and a non-zero exit."""


class EsrError(Exception):
    """Base class: the message is what the user sees, on one line."""


class UnknownModel(EsrError):
    """A model name or weights file that no installed architecture can place."""


class BadWeights(EsrError):
    """A weights file that is missing, truncated, unsafe or of the wrong shape."""


class BadImage(EsrError):
    """An input that is not a readable image."""


class DownloadError(EsrError):
    """A download that failed, or served bytes that do not match their sha256."""
