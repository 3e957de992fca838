"""The ML server's HTTP API (FastAPI), the same for the local and the Ray backend.

Auth: every route but ``/healthz`` needs ``Authorization: Bearer <ML_SERVER_TOKEN>`` when a token
is configured (``/metrics`` too: queue sizes and job counts are operational data; point
Prometheus' ``authorization`` setting at the token). Without a token the server only listens on
loopback (enforced in ``server.main``).

Errors are ``{"detail": {"code", "message", "field"?}}``; ``message`` is safe to show a user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stylebot.jobs.spec import JobClientError, JobSpec, JobStatus
from stylebot.server.lifecycle import JobLifecycle

JobBackend = JobLifecycle

MAX_JSON_BODY = 64 * 1024
UPLOAD_OVERHEAD = 64 * 1024  # multipart framing and the owner field around an upload
# Status codes for JobClientError codes; image errors (bad_image, not_an_image, ...) are 422.
_HTTP_STATUS = {
    "not_found": 404,
    "owner_limit": 409,
    "not_ready": 409,
    "busy": 503,
    "unavailable": 503,
    "invalid": 422,
    "foreign_key": 403,
    "unauthorized": 401,
    "too_large": 413,
}


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {}
    if extra.get("retry_after") is not None:
        headers["Retry-After"] = str(int(extra.pop("retry_after") + 0.999))
    extra.pop("retry_after", None)
    body = {"code": code, "message": message, **{k: v for k, v in extra.items() if v is not None}}
    return JSONResponse({"detail": body}, status_code=status, headers=headers)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "path", "query", "form")]
    return ".".join(parts) or "body"


def _sniff_media_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


def get_backend(request: Request) -> JobBackend:
    found = request.app.state.backend()
    if found is None:
        raise JobClientError(
            "unavailable", "The style service is starting; try again shortly.", retry_after=5
        )
    return found


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuses request bodies over the limit before and while reading them (pure ASGI).

    Uploads may be ``max_upload_bytes`` plus room for the multipart framing; everything else is a
    small JSON body. A declared Content-Length over the limit is refused unread; a chunked body is
    counted as it streams and reading stops at the limit.
    """

    def __init__(self, app: Any, lookup: Callable[[], JobBackend | None]) -> None:
        self.app = app
        self.lookup = lookup

    def limit(self, path: str) -> int:
        if path != "/v1/inputs":
            return MAX_JSON_BODY
        backend = self.lookup()
        return (backend.settings.max_upload_bytes if backend is not None else 0) + UPLOAD_OVERHEAD

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["path"])
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large()(scope, receive, send)
            return
        seen = 0
        refused = False
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    raise _TooLarge
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if refused:  # the app turned our exception into its own error: answer 413 instead
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            refused = True
        if refused and not started:
            await _too_large()(scope, receive, send)


def _too_large() -> JSONResponse:
    return _error(413, "too_large", "The request body is too large.")


# Module level: FastAPI resolves these (string) annotations in this module's namespace.
Backend = Annotated[JobBackend, Depends(get_backend)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


def create_app(backend: JobBackend | Callable[[], JobBackend | None]) -> FastAPI:
    """The API around a backend, reached one way: ``app.state.backend()``.

    Given a backend, the app starts and stops it with its lifespan. Given a function, the app
    asks it for the backend on each request (None while it is starting): Ray Serve ships a copy
    of the app to the ingress replica, whose constructor then creates and starts the backend.
    """
    managed = backend if isinstance(backend, JobLifecycle) else None
    lookup: Callable[[], JobBackend | None] = (
        (lambda: managed) if isinstance(backend, JobLifecycle) else backend
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if managed is not None:
            await managed.start()
        try:
            yield
        finally:
            if managed is not None:
                await managed.stop()

    app = FastAPI(title="stylebot ML server", version="1", lifespan=lifespan)
    app.state.backend = lookup

    def authorize(request: Request, credentials: Credentials) -> None:
        backend = get_backend(request)
        token = backend.settings.ml_server_token
        if token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise HTTPException(
                401,
                {"code": "unauthorized", "message": "Missing or wrong bearer token."},
                headers={"WWW-Authenticate": "Bearer"},
            )

    guarded = [Depends(authorize)]

    app.add_middleware(BodyLimit, lookup=lookup)

    @app.exception_handler(JobClientError)
    async def on_job_error(_: Request, exc: JobClientError) -> JSONResponse:
        status = _HTTP_STATUS.get(exc.code, 422 if exc.field == "file" else 400)
        return _error(status, exc.code, exc.message, field=exc.field, retry_after=exc.retry_after)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field_name(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return _error(
            422, "invalid", f"{first['field']}: {first['message']}", field=first["field"], errors=errors
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", dependencies=guarded)
    async def metrics(backend: Backend) -> Response:
        body, content_type = backend.render_metrics()
        return Response(body, media_type=content_type)

    @app.post("/v1/inputs", dependencies=guarded)
    async def upload_input(
        backend: Backend, file: Annotated[UploadFile, File()], owner: Annotated[str, Form(max_length=64)]
    ) -> dict[str, str]:
        limit = backend.settings.max_upload_bytes
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise JobClientError(
                "image_too_large", f"The file is larger than {limit / 2**20:.0f} MB.", field="file"
            )
        key = await backend.upload_input(data, owner=owner, name=file.filename or "input")
        return {"key": key}

    @app.post("/v1/jobs", status_code=202, dependencies=guarded)
    async def submit(backend: Backend, spec: JobSpec) -> JobStatus:
        return await backend.submit(spec)

    @app.get("/v1/jobs/{job_id}", dependencies=guarded)
    async def status(backend: Backend, job_id: str) -> JobStatus:
        return await backend.status(job_id)

    @app.delete("/v1/jobs/{job_id}", dependencies=guarded)
    async def cancel(backend: Backend, job_id: str) -> JobStatus:
        return await backend.cancel(job_id)

    @app.post("/v1/jobs/{job_id}/finish", dependencies=guarded)
    async def finish_now(backend: Backend, job_id: str) -> JobStatus:
        return await backend.finish_now(job_id)

    @app.get("/v1/jobs/{job_id}/result", dependencies=guarded)
    async def result(backend: Backend, job_id: str) -> Response:
        data = await backend.result(job_id)
        return Response(data, media_type=_sniff_media_type(data))

    @app.get("/v1/jobs/{job_id}/preview", dependencies=guarded)
    async def preview(backend: Backend, job_id: str) -> Response:
        data = await backend.preview(job_id)
        if data is None:
            return Response(status_code=204)
        return Response(data, media_type=_sniff_media_type(data))

    @app.get("/v1/styles", dependencies=guarded)
    async def styles(backend: Backend) -> dict[str, list[dict[str, Any]]]:
        return {"styles": [dataclasses.asdict(s) for s in await backend.styles()]}

    return app
