"""JobClient: how the bot talks to the ML side.

Two implementations behind one interface: ``InProcessJobClient`` (the embedded default: the
job service runs in this process, no HTTP) and ``HttpJobClient`` (a remote ML server).
``make_job_client(settings)`` picks one: HTTP when ``ML_SERVER_HOST_ADDR`` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from stylebot.jobs.spec import JobClientError, JobSpec, JobStatus, StyleInfo

__all__ = [
    "HttpJobClient",
    "InProcessJobClient",
    "JobClient",
    "JobClientError",
    "StyleInfo",
    "make_job_client",
]

if TYPE_CHECKING:
    import httpx

    from stylebot.config import Settings
    from stylebot.server.service import JobService


@runtime_checkable
class JobClient(Protocol):
    async def upload_input(self, data: bytes, *, owner: str, name: str) -> str:
        """Validate and store one input image; returns its storage key."""
        ...

    async def submit(self, spec: JobSpec) -> JobStatus: ...

    async def status(self, job_id: str) -> JobStatus: ...

    async def cancel(self, job_id: str) -> JobStatus: ...

    async def finish(self, job_id: str) -> JobStatus:
        """End a running refinement now with its latest image (``not_ready`` before the first)."""
        ...

    async def result(self, job_id: str) -> bytes: ...

    async def preview(self, job_id: str) -> bytes | None: ...

    async def styles(self) -> list[StyleInfo]: ...

    def watch(self, job_id: str, *, interval: float = 1.0) -> AsyncIterator[JobStatus]:
        """Yield each changed status until the job is finished (the last one yielded)."""
        ...

    async def aclose(self) -> None: ...


class _Watching:
    async def status(self, job_id: str) -> JobStatus:
        raise NotImplementedError

    async def watch(self, job_id: str, *, interval: float = 1.0) -> AsyncIterator[JobStatus]:
        last: dict[str, Any] | None = None
        while True:
            status = await self.status(job_id)
            seen = status.model_dump(exclude={"eta_s"})
            if seen != last:
                last = seen
                yield status
            if status.finished:
                return
            await asyncio.sleep(interval)


class InProcessJobClient(_Watching):
    """The embedded default: a JobService in this process and event loop, no HTTP.

    Given no service, it builds one from settings (storage from ``make_storage``) and starts it
    on first use; ``aclose()`` stops a service it built.
    """

    def __init__(self, service: JobService | None = None, *, settings: Settings | None = None) -> None:
        self._service = service
        self._settings = settings
        self._owns_service = service is None
        self._start_lock = asyncio.Lock()

    async def _svc(self) -> JobService:
        async with self._start_lock:
            if self._service is None:
                from stylebot.config import get_settings
                from stylebot.server.service import JobService
                from stylebot.storage import make_storage

                settings = self._settings or get_settings()
                self._service = JobService(make_storage(settings), settings)
            await self._service.start()
        return self._service

    async def upload_input(self, data: bytes, *, owner: str, name: str) -> str:
        return await (await self._svc()).upload_input(data, owner=owner, name=name)

    async def submit(self, spec: JobSpec) -> JobStatus:
        return await (await self._svc()).submit(spec)

    async def status(self, job_id: str) -> JobStatus:
        return await (await self._svc()).status(job_id)

    async def cancel(self, job_id: str) -> JobStatus:
        return await (await self._svc()).cancel(job_id)

    async def finish(self, job_id: str) -> JobStatus:
        return await (await self._svc()).finish_now(job_id)

    async def result(self, job_id: str) -> bytes:
        return await (await self._svc()).result(job_id)

    async def preview(self, job_id: str) -> bytes | None:
        return await (await self._svc()).preview(job_id)

    async def styles(self) -> list[StyleInfo]:
        return await (await self._svc()).styles()

    async def aclose(self) -> None:
        if self._owns_service and self._service is not None:
            await self._service.stop()


_STATUS_CODES = {404: "not_found", 409: "owner_limit", 422: "invalid", 503: "busy"}
_UNAVAILABLE = "The style service is not reachable right now; please try again in a few minutes."


class HttpJobClient(_Watching):
    """A remote ML server (``stylebot server``) over its HTTP API, with a bearer token."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise JobClientError("unavailable", _UNAVAILABLE) from exc
        if response.is_success:
            return response
        raise self._error(response)

    @staticmethod
    def _error(response: httpx.Response) -> JobClientError:
        detail: Any = None
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        retry_after = None
        if "retry-after" in response.headers:
            try:
                retry_after = float(response.headers["retry-after"])
            except ValueError:
                retry_after = None
        if isinstance(detail, dict) and isinstance(detail.get("code"), str):
            return JobClientError(
                detail["code"],
                str(detail.get("message") or _UNAVAILABLE),
                retry_after=retry_after,
                field=detail.get("field"),
            )
        if response.status_code in (401, 403):
            return JobClientError("unauthorized", "The style service refused this bot's credentials.")
        code = _STATUS_CODES.get(response.status_code, "unavailable")
        refused = "The style service refused the request."
        message = _UNAVAILABLE if code in ("unavailable", "busy") else refused
        return JobClientError(code, message, retry_after=retry_after)

    async def upload_input(self, data: bytes, *, owner: str, name: str) -> str:
        response = await self._request(
            "POST",
            "/v1/inputs",
            data={"owner": owner},
            files={"file": (name or "input", data, "application/octet-stream")},
        )
        return response.json()["key"]

    async def submit(self, spec: JobSpec) -> JobStatus:
        response = await self._request(
            "POST", "/v1/jobs", content=spec.model_dump_json(), headers={"Content-Type": "application/json"}
        )
        return JobStatus.model_validate_json(response.content)

    async def status(self, job_id: str) -> JobStatus:
        return JobStatus.model_validate_json((await self._request("GET", f"/v1/jobs/{job_id}")).content)

    async def cancel(self, job_id: str) -> JobStatus:
        return JobStatus.model_validate_json((await self._request("DELETE", f"/v1/jobs/{job_id}")).content)

    async def finish(self, job_id: str) -> JobStatus:
        response = await self._request("POST", f"/v1/jobs/{job_id}/finish")
        return JobStatus.model_validate_json(response.content)

    async def result(self, job_id: str) -> bytes:
        return (await self._request("GET", f"/v1/jobs/{job_id}/result")).content

    async def preview(self, job_id: str) -> bytes | None:
        response = await self._request("GET", f"/v1/jobs/{job_id}/preview")
        return response.content if response.status_code == 200 and response.content else None

    async def styles(self) -> list[StyleInfo]:
        response = await self._request("GET", "/v1/styles")
        known = set(StyleInfo.__dataclass_fields__)
        items = response.json()["styles"]
        return [StyleInfo(**{k: v for k, v in item.items() if k in known}) for item in items]

    async def aclose(self) -> None:
        await self._http.aclose()


def make_job_client(settings: Settings) -> JobClient:
    """HTTP to ``ML_SERVER_HOST_ADDR`` when it is set, else the in-process service."""
    if settings.ml_server_host_addr:
        token = settings.ml_server_token.get_secret_value() if settings.ml_server_token else None
        return HttpJobClient(settings.ml_server_host_addr, token)
    return InProcessJobClient(settings=settings)
