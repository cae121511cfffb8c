"""Errors the collector answers with: always JSON, always a 4xx or 503 with a reason."""

from __future__ import annotations

from collector.request import Answer
from headwater.projects.model import Project


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, errors: list | None = None,
                 headers: dict[str, str] | None = None, count: int | None = None) -> None:
        super().__init__(message)
        self.count = len(errors or []) if count is None else count
        self.project: Project | None = None  # the request's project, once known (for the CORS headers)
        self.status = status
        self.reason = reason
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}

    def answer(self) -> Answer:
        # "code" repeats the reason for SDKs (RudderStack's) that read that name.
        body = {"success": False, "reason": self.reason, "code": self.reason, "message": self.message}
        if self.errors:
            body.update(errors=self.errors, error_count=self.count)
        return Answer.json(self.status, body, self.headers)

    def with_headers(self, headers: dict[str, str]) -> ApiError:
        self.headers = {**headers, **self.headers}
        return self
