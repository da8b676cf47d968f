"""What every HTTP entry of the loop answers the same way: JSON bodies read safely, errors as JSON.

Apart from `mlops.runtime.push` so that an app that takes no Pub/Sub pushes (the predictor, a
Vertex AI serving container) imports Flask helpers without the push machinery: its dispatch, the
event codecs it decodes with, and the OIDC check of `mlops.runtime.push_auth`.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

log = structlog.get_logger("http")


def json_body() -> tuple[Any, str | None]:
    """The request body parsed as JSON, or None and the reason it is not JSON. Flask's `get_json`
    lets a RecursionError (deep nesting) escape as a 500; here every bad body is a reason."""
    raw = request.get_data(cache=True)  # raises RequestEntityTooLarge past MAX_CONTENT_LENGTH: a 413
    if not raw:
        return None, "the body is empty"
    try:
        return json.loads(raw), None
    except RecursionError:
        return None, "the body is not usable JSON: it nests too deeply"
    except ValueError as error:  # UnicodeDecodeError and integers of more than 4,300 digits included
        return None, f"the body is not valid JSON: {str(error)[:200]}"


def install_json_errors(app: Flask) -> None:
    """Every error a Flask app answers is JSON: `{"error": "..."}` with the status (and headers, such
    as 405's Allow) of the HTTP error; anything unexpected is logged with its traceback and answered
    as a JSON 500 that names only the exception's class."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> WerkzeugResponse:
        response = error.get_response()
        response.set_data(json.dumps({"error": f"{error.name}: {error.description}", "status": error.code}))
        response.content_type = "application/json"
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[Response, int]:
        log.error("unhandled error", error=repr(error)[:2000], path=request.path, exc_info=True)
        return jsonify(error=f"internal error ({type(error).__name__}); it is logged", status=500), 500
