"""Kafka clients for unit tests of the consuming loops: they do what the loops ask without a broker
and note each request in a shared ``calls`` list, so a test can assert the order of what happened."""

from __future__ import annotations

import asyncio


class FakeBatch:
    def append(self, **record):
        return record


class FakeProducer:
    """A transactional producer. A send to a topic ending in ``fail_sends_to`` fails with
    ``send_error``; a commit waits for ``commit_gate`` (when given), then raises the next of
    ``commit_errors`` (when any are left) or succeeds."""

    def __init__(self, calls: list, name: str = "producer", fail_sends_to: str | None = None,
                 send_error: BaseException | None = None, commit_gate: asyncio.Event | None = None,
                 commit_errors: list[BaseException] | None = None) -> None:
        self.calls, self.name = calls, name
        self.fail_sends_to, self.send_error = fail_sends_to, send_error
        self.commit_gate, self.commit_errors = commit_gate, list(commit_errors or [])

    async def start(self) -> None:
        self.calls.append(f"{self.name} started")

    async def stop(self) -> None:
        self.calls.append(f"{self.name} stopped")

    async def begin_transaction(self) -> None:
        self.calls.append("begin")

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch: FakeBatch, topic: str, partition: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if self.fail_sends_to and topic.endswith(self.fail_sends_to):
            future.set_exception(self.send_error or RuntimeError("send failed"))
        else:
            future.set_result(None)
        return future

    async def send_offsets_to_transaction(self, offsets: dict, group_id: str) -> None:
        self.calls.append(("offsets", *offsets.values()))

    async def commit_transaction(self) -> None:
        if self.commit_gate is not None:
            await self.commit_gate.wait()
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        self.calls.append("commit")

    async def abort_transaction(self) -> None:
        self.calls.append("abort")


class FakeConsumer:
    """A group member with a fixed assignment."""

    def __init__(self, calls: list, assigned=()) -> None:
        self.calls, self.assigned = calls, set(assigned)

    def assignment(self) -> set:
        return set(self.assigned)

    async def seek_to_committed(self) -> None:
        self.calls.append("seek_to_committed")


def producers(*made: FakeProducer):
    """A ``new_producer`` that hands out ``made`` in turn (the first at construction, then each
    replacement)."""
    queue = list(made)
    return lambda: queue.pop(0)
