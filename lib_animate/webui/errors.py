"""Errors raised into the webui so that the API answers 422 and the UI shows the message.

The webui's API middleware answers with ``vars(e).get("status_code", 500)`` and puts ``str(e)``
in the ``errors`` field, so the status code must be an *instance* attribute.
"""

from ..errors import AnimateError


class RequestError(AnimateError):
    """A bad request or setting, reported as HTTP 422 by the API."""

    def __init__(self, message: str):
        super().__init__(message)
        self.status_code = 422


def as_request_error(error: BaseException) -> RequestError:
    if isinstance(error, RequestError):
        return error
    return RequestError(f"Animate Anyone: {error}")
