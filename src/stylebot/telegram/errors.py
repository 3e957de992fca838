"""Telegram's error shape: ``{"ok": false, "error_code": N, "description": "..."}``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered to a bot exactly as Telegram words it (400 is "Bad Request: ...")."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            out["parameters"] = self.parameters
        return out


def bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


def forbidden(detail: str) -> ApiError:
    return ApiError(403, f"Forbidden: {detail}")


def conflict(detail: str) -> ApiError:
    return ApiError(409, f"Conflict: {detail}")


UNAUTHORIZED = ApiError(401, "Unauthorized")
NOT_FOUND = ApiError(404, "Not Found")
