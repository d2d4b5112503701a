"""Errors a user can cause: each one ends in one clear line and a non-zero exit."""

from pathlib import Path


def first_line(e: BaseException | str) -> str:
    """An exception's (or a reason's) first line, or its type when it says nothing."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def shown(path: str | Path) -> str:
    """A file name fit for a one-line message: control characters (a newline in a name) escaped."""
    text = str(path)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class EsrError(Exception):
    """Base class: the message is what the user sees, on one line."""


class UnknownModel(EsrError):
    """A model name or weights file that no installed architecture can place."""


class AmbiguousModel(UnknownModel):
    """A weights file whose tensors fit more than one architecture: the user names one (`--arch`)."""

    def __init__(self, source: str, candidates: list[str]):
        self.candidates = candidates
        super().__init__(f"{source} fits several architectures ({', '.join(candidates)}), which read the same tensors "
                         f"differently: name one with --arch {candidates[0]} (or another of them)")


class BadWeights(EsrError):
    """A weights file that is missing, truncated, unsafe or of the wrong shape."""


class BadImage(EsrError):
    """An input that is not a readable image."""


class DownloadError(EsrError):
    """A download that failed, or served bytes that do not match their sha256."""
