"""Errors raised into the webui so that the API answers 422 and the UI shows the message.

The webui's API middleware answers with ``vars(e).get("status_code", 500)`` and puts ``str(e)``
in the ``errors`` field, so the status code must be an *instance* attribute. It prints a full
traceback into the server log for every exception that is not FastAPI's ``HTTPException``; a
request error is one (where FastAPI is importable: always inside the webui), so a bad request
costs one line, not ninety.
"""

from ..errors import AnimateError

try:
    from fastapi import HTTPException as _HTTPException
except ImportError:  # outside the webui (the engine's own tests): a plain exception does
    _HTTPException = Exception


class RequestError(AnimateError, _HTTPException):
    """A bad request or setting, reported as HTTP 422 by the API."""

    def __init__(self, message: str):
        AnimateError.__init__(self, message)  # HTTPException's own __init__ leaves the message out of str()
        self.status_code = 422
        self.detail = message
        self.headers = None

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def as_request_error(error: BaseException) -> RequestError:
    if isinstance(error, RequestError):
        return error
    return RequestError(f"Animate Anyone: {error}")
