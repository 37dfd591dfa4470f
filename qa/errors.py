"""Domain errors. Each message names the offending value and, where it helps, what to do next.

The web layer maps these to HTTP status codes; the library never knows about HTTP.
"""

from __future__ import annotations


class QAError(Exception):
    """Base class of every error seedqa raises on purpose."""


class ConfigError(QAError):
    """A setting has a value seedqa cannot use."""


class SeedFileError(QAError):
    """A seed file cannot be read as an article (not text, not UTF-8, empty, outside the folder)."""


class ModelLoadError(QAError):
    """The embedding model named in the settings cannot be loaded."""


class IndexNotFoundError(QAError):
    """There is no index at the configured location yet."""


class IndexCorruptError(QAError):
    """An index file is missing, truncated or does not match its recorded checksum."""


class IndexMismatchError(QAError):
    """The index was built with another model or other chunking settings than the ones asked for."""


class IndexSchemaError(IndexMismatchError):
    """The index was written by an older seedqa, in a layout this one does not read."""

    def __init__(self, message: str, *, layout: str) -> None:
        super().__init__(message)
        #: What the index is, in words ("the single-folder layout of seedqa before segments ...").
        self.layout = layout


class IndexBusyError(QAError):
    """Another build holds the index lock."""


class ExecutorError(QAError):
    """A build executor (e.g. the Ray cluster) failed, or returned results that do not match
    what it was sent; the live index is left as it was."""


class InvalidQueryError(QAError):
    """A question or a search parameter is not acceptable."""


class DocumentNotFoundError(QAError):
    """A document path is unknown or points outside the seeds folder."""


class ReaderError(ConfigError):
    """The reader or reranker folder is missing, not a model, or a model of the wrong kind."""


# -- managing documents (issue 14) -------------------------------------------------------------
class InvalidDocumentNameError(QAError):
    """A document name is unsafe or malformed (``..``, absolute, hidden, a device, too long)."""


class UnsupportedDocumentError(QAError):
    """A document's suffix, declared type or actual content is not a format seedqa reads."""


class DocumentContentError(SeedFileError):
    """A document is in the format its name says but cannot be used (corrupt, empty, no text)."""


class DocumentTooLargeError(QAError):
    """A document is larger than the configured upload limit."""
