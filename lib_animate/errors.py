"""Errors a user can act on.

Everything the engine raises on purpose derives from :class:`AnimateError`; its message is
written for the person who supplied the file or the request. The webui layer turns these into
visible UI errors and HTTP 422 answers.
"""


class AnimateError(Exception):
    """Base class: the message says what is wrong and what to do about it."""


class WeightsFileError(AnimateError):
    """A weights file is missing, unreadable, unsafe or of the wrong kind."""


class UnsupportedModelError(WeightsFileError):
    """A recognised weights file that this version cannot use (e.g. an SDXL motion module)."""


class InvalidInputError(AnimateError):
    """A request field, an uploaded file or a setting has a value that cannot be used."""


class IncompatibleModelError(AnimateError):
    """Weights that do not fit the model they are applied to (channels, layout, base model)."""
