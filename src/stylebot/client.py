"""JobClient: how the bot talks to the ML side.

Two implementations behind one interface: ``InProcessJobClient`` (the embedded default: the
job service runs in this process, no HTTP) and ``HttpJobClient`` (a remote ML server).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from stylebot.jobs.spec import JobSpec, JobStatus


class JobClientError(Exception):
    """The ML side could not be reached or refused the request.

    ``code`` is stable for programs (``unavailable``, ``busy``, ``owner_limit``, ``invalid``,
    ``not_found``, ``bad_image``...); ``str()`` is safe to show a user.
    """

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


class StyleInfo(Protocol):
    name: str
    title: str
    installed: bool
    reason: str | None


@runtime_checkable
class JobClient(Protocol):
    async def upload_input(self, data: bytes, *, owner: str, name: str) -> str:
        """Validate and store one input image; returns its storage key."""
        ...

    async def submit(self, spec: JobSpec) -> JobStatus: ...

    async def status(self, job_id: str) -> JobStatus: ...

    async def cancel(self, job_id: str) -> JobStatus: ...

    async def result(self, job_id: str) -> bytes: ...

    async def preview(self, job_id: str) -> bytes | None: ...

    async def styles(self) -> list[StyleInfo]: ...

    def watch(self, job_id: str, *, interval: float = 1.0) -> AsyncIterator[JobStatus]:
        """Yield each changed status until the job is finished (the last one yielded)."""
        ...

    async def aclose(self) -> None: ...
