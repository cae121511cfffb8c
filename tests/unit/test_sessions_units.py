"""Session rules as a pure function of a visitor's events."""

from __future__ import annotations

import orjson

from headwater.envelope import Envelope
from processors.sessions import SessionOptions, VisitorState, session_id

MIN = 60_000
OPTIONS = SessionOptions(timeout_ms=30 * MIN, max_length_ms=24 * 60 * MIN, split_on_campaign=True)


def event(ts_min: int, kind: str = "page", path: str = "/", campaign: str = "") -> tuple[Envelope, int]:
    envelope = Envelope("shop", f"m{ts_min}", 0, "r", {"type": kind, "anonymousId": "v"})
    envelope.enriched["page"] = {"path": path}
    if campaign:
        envelope.enriched["campaign"] = {"campaign": campaign}
    return envelope, ts_min * MIN


def run(*events) -> tuple[VisitorState, list]:
    state, results = VisitorState(), []
    for envelope, ts in events:
        result, _ = state.apply(envelope, ts, OPTIONS)
        results.append(result)
    return state, results


def step_record(envelopes: list[Envelope], partition: int = 0, offset: int = 0):
    """A record of the sessionize step's topic holding ``envelopes``, routed on to the indexer."""
    from aiokafka.structs import ConsumerRecord

    from headwater.envelope import encode_batch
    from headwater.routing import encode_route

    return ConsumerRecord("headwater.step.sessionize", partition, offset, 0, 0, b"k", encode_batch(envelopes),
                          None, 0, 0, encode_route(["sessionize", "index"]))


def as_poll(*records) -> dict:
    """What ``getmany`` returns for these records: lists by topic partition."""
    from aiokafka.structs import TopicPartition

    batch: dict = {}
    for record in records:
        batch.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
    return batch


def book_for(*projects, settings=None, kind=None):
    """A session book (of class ``kind``, by default :class:`SessionBook`) for these projects."""
    from headwater.partitioning import PartitionMap
    from headwater.projects.store import FixedProjects
    from headwater.settings import Settings
    from processors.session_book import SessionBook, options_in

    settings = settings or Settings()
    counts = PartitionMap()
    counts.counts = {"headwater.step.index": 4}
    return (kind or SessionBook)(settings, options_in(settings, FixedProjects(*projects)), counts)


def sessionizer_with(book, consumer, *producers):
    """The sessionizer's transactional loop around ``book``, on fake Kafka clients (tests/fakes.py)."""
    from headwater.settings import Settings
    from headwater.stateful import Clients
    from processors.sessionize import Sessionizer
    from tests.fakes import producers as handing_out

    return Sessionizer(Settings(), book, Clients(consumer, handing_out(*producers), new_reader=None),
                       inputs=("headwater.step.sessionize",), group_id="headwater-processor-sessionize")


def sessionize(book, poll):
    import time

    return book.sessionize(poll, time.monotonic())


def test_inactivity_splits_and_ids_are_deterministic():
    _, results = run(event(0), event(10), event(41), event(50))
    assert [seq for _, seq in results] == [1, 2, 1, 2]
    assert results[0][0] == results[1][0] == session_id("shop", "v", 0)
    assert results[2][0] == session_id("shop", "v", 41 * MIN) != results[0][0]
    assert run(event(0), event(10), event(41), event(50))[1] == results  # same input, same sessions


def test_maximum_length_splits_a_long_session():
    state, results = run(*(event(m) for m in range(0, 25 * 60 + 1, 20)))
    assert len({sid for sid, _ in results}) == 2 and state.sessions == 2


def test_a_new_campaign_starts_a_new_session():
    _, results = run(event(0, campaign="spring"), event(5, campaign="spring"), event(6, campaign="summer"))
    assert results[1][0] == results[0][0] != results[2][0]


def test_out_of_order_event_joins_and_moves_the_start():
    state, results = run(event(10, path="/b"), event(20, path="/c"), event(5, path="/a"))
    assert len({sid for sid, _ in results}) == 1
    assert state.session["start_ms"] == 5 * MIN and state.session["entry_page"] == "/a"
    assert state.session["exit_page"] == "/c" and state.session["pageviews"] == 3


def test_an_event_of_an_earlier_closed_session_is_too_late():
    _, results = run(event(100), event(10))
    assert results[1] is None


def test_rows_cancel_the_previous_version():
    state, _ = run(event(0), event(1, kind="track"))
    first = state.rows("shop", "v")
    assert [row[-2:] for row in first] == [[1, 1]]
    state.apply(*event(2), OPTIONS)
    second = state.rows("shop", "v")
    assert [row[-2:] for row in second] == [[-1, 1], [1, 2]]
    assert second[0][:-2] == first[0][:-2]  # the cancel row repeats the old row exactly
    assert state.rows("shop", "v") == []  # nothing changed since


def test_bounce_new_visitor_and_closed_session_rows():
    state, _ = run(event(0))
    row = state.rows("shop", "v")[0]
    is_bounce, is_new = row[-4], row[-3]
    assert is_bounce and is_new
    _, closed = state.apply(*event(100), OPTIONS)
    assert closed == []  # the first session's row was already current
    state.apply(*event(101), OPTIONS)
    row = state.rows("shop", "v")[-1]
    assert not row[-4] and not row[-3]  # two events; the visitor's second session


def test_a_cookieless_visit_continues_across_midnight():
    """The anonymize step gives the same partition bucket on both days and yesterday's id along with
    today's; the sessionizer moves the open session to the new id."""
    import asyncio
    import datetime as dt

    from headwater.projects.model import Project
    from headwater.projects.store import FixedProjects
    from headwater.settings import Settings
    from processors.anonymize import Anonymize

    day1, day2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)

    class Salts:
        salts = {day1 - dt.timedelta(days=1): b"0" * 32, day1: b"1" * 32, day2: b"2" * 32}

        def salt_for(self, day):
            return self.salts[day]

    project = Project("shop", "Shop", 0, privacy={"cookieless": True},
                      hash_keys=[{"id": "k", "secret": "s", "created_at_ms": 0}])
    anonymize = Anonymize(Settings(), FixedProjects(project), Salts())

    def visit(at: dt.datetime) -> Envelope:
        ms = int(at.timestamp() * 1000)
        envelope = Envelope("shop", f"m{ms}", ms, "r", {"type": "page", "anonymousId": "client",
                                                        "timestamp": at.isoformat()}, "81.2.69.9", "UA")
        return anonymize.process(envelope)

    before = visit(dt.datetime(2026, 3, 1, 23, 50, tzinfo=dt.UTC))
    after = visit(dt.datetime(2026, 3, 2, 0, 5, tzinfo=dt.UTC))
    assert before.event["anonymousId"] != after.event["anonymousId"]
    assert after.enriched["previous_visitor_id"] == before.event["anonymousId"]
    assert before.key() == after.key()  # same partition on both days

    async def sessionized() -> list[str]:
        book = book_for(project)
        ids = []
        for offset, envelope in enumerate((before, after)):
            outputs, _, _ = sessionize(book, as_poll(step_record([envelope], offset=offset)))
            ids.append(orjson.loads(outputs[0].value)[0]["enriched"]["session"]["id"])
        return ids

    first, second = asyncio.run(sessionized())
    assert first == second


def test_the_visitor_state_recognises_copies_of_recent_events():
    from processors import session_changelog
    from processors.sessions import RECENT_IDS, VisitorState

    state = VisitorState()
    assert not state.seen("m-1") and not state.seen("m-2")
    assert state.seen("m-1") and state.seen("m-2")  # a retry, or a batch delivered again
    for n in range(3, 3 + RECENT_IDS):
        assert not state.seen(f"m-{n}")
    assert not state.seen("m-1")  # only the last few are remembered
    restored, _ = session_changelog.load(session_changelog.dump(state, 0), "shop")  # as the changelog keeps it
    assert restored.seen(f"m-{2 + RECENT_IDS}") and not restored.seen("m-2")


def test_a_transaction_with_a_failed_send_is_aborted_and_the_state_read_again():
    """aiokafka would commit a transaction whose batch failed (its commit waits for batches to finish,
    not to succeed); the sessionizer checks every send, aborts, and restores from the changelog."""
    import asyncio

    from aiokafka import TopicPartition
    from aiokafka.errors import NotEnoughReplicasError
    from aiokafka.structs import ConsumerRecord

    from headwater.relay_types import Output
    from processors.session_book import Partition, SessionBook
    from processors.sessionize import Sessionizer
    from tests.fakes import FakeConsumer, FakeProducer

    calls = []
    outputs = [Output("headwater.sessions", None, b"[]", [], events=0, partition=0),
               Output("headwater.step.index", b"k", b"[]", [])]

    class FixedOutputs(SessionBook):
        def poll(self, batch, now):
            return outputs, 0

    async def run() -> Sessionizer:
        book = book_for(kind=FixedOutputs)
        book.partitions = {0: Partition(), 2: Partition()}
        consumer = FakeConsumer(calls, {TopicPartition("headwater.step.sessionize", 0),
                                        TopicPartition("headwater.step.sessionize", 2)})
        sessionizer = sessionizer_with(book, consumer, FakeProducer(calls, fail_sends_to="index",
                                                                   send_error=NotEnoughReplicasError()))
        await sessionizer.handle({TopicPartition("headwater.step.sessionize", 0): [
            ConsumerRecord("headwater.step.sessionize", 0, 7, 0, 0, b"k", b"[]", None, 0, 0, [])]})
        assert not await sessionizer.settle()  # the transaction's outcome is taken at the next poll
        return sessionizer

    sessionizer = asyncio.run(run())
    assert calls == ["begin", "abort", "seek_to_committed"]  # never committed
    assert sessionizer.book.partitions == {} and sessionizer.to_restore == {0, 2}
    assert sessionizer.failed_transactions == 1


def test_a_producer_broken_by_a_broker_restart_is_replaced():
    """After OutOfOrderSequenceNumber every later transaction of that producer fails the same way
    (make chaos hung on it): the sessionizer starts a new one for its transactional id."""
    import asyncio

    from aiokafka.errors import OutOfOrderSequenceNumber

    from processors.sessionize import Sessionizer
    from tests.fakes import FakeConsumer, FakeProducer

    events = []
    new = FakeProducer(events, "new")

    async def run() -> Sessionizer:
        sessionizer = sessionizer_with(book_for(), FakeConsumer(events), FakeProducer(events, "old"), new)
        await sessionizer.after_failed_transaction(OutOfOrderSequenceNumber())
        return sessionizer

    sessionizer = asyncio.run(run())
    assert events == ["old stopped", "new started"] and sessionizer.producer is new


def test_an_open_sessions_rows_are_written_at_most_once_per_interval():
    """A new session's row at once; later changes wait for ``session_row_interval_s``, then one row
    pair (cancel + current) carries them all; the changelog keeps the pending change across a restart."""
    import asyncio
    import dataclasses

    from aiokafka.structs import ConsumerRecord

    from headwater.projects.model import Project
    from headwater.settings import Settings
    from processors import session_changelog
    from processors.session_book import Partition

    def poll(offset: int, path: str) -> dict:
        envelope = Envelope("shop", f"m{offset}", 1_795_348_740_000 + offset * 1000, "r",
                            {"type": "page", "anonymousId": "v"})
        envelope.enriched["page"] = {"path": path}
        return as_poll(step_record([envelope], offset=offset))

    async def scenario() -> None:
        settings = dataclasses.replace(Settings(), session_row_interval_s=5.0)
        book = book_for(Project("shop", "Shop", 0), settings=settings)
        _, rows, _ = sessionize(book, poll(0, "/a"))
        assert [r[-2:] for r in rows[0]] == [[1, 1]]  # the new session, at once
        for offset, path in ((1, "/b"), (2, "/c")):
            _, rows, touched = sessionize(book, poll(offset, path))
            assert not rows[0]
            value = book.changelog_outputs(touched)[0].value
            assert session_changelog.load(value, "shop")[0].changed
        assert not book.rows_due(time.monotonic())
        later = time.monotonic() + 5.0
        assert book.rows_due(later)
        rows, touched = {0: []}, {}
        book.due_rows(later, rows, touched)
        cancel, current = rows[0]
        assert (cancel[9], cancel[-2:], current[9], current[11], current[-2:]) == (1, [-1, 1], 3, "/c", [1, 2])
        assert list(touched) == [(0, "shop:v")]  # its changelog record follows
        rows, touched = {0: []}, {}
        book.due_rows(later + 10, rows, touched)
        assert rows == {0: []}  # nothing changed since

        restored = book_for(Project("shop", "Shop", 0), settings=settings)  # from a visitor's changelog
        _, _, touched = sessionize(book, poll(3, "/d"))  # with an unwritten change
        record = book.changelog_outputs(touched)[0]
        restored.partitions[0] = Partition()
        restored.restore_record(0, ConsumerRecord("state", 0, 0, 0, 0, record.key, record.value,
                                                  None, 0, 0, []))
        assert restored.rows_due(time.monotonic())

    import time
    asyncio.run(scenario())


def test_idle_sessions_close_by_their_own_projects_clock_in_their_own_partition():
    """When a project's events move its watermark in a partition past an open session's end, its
    timeout and the allowed lateness, the session closes (its final row written) and the visitor's
    changelog record follows; another project's sessions, and the same project's in another
    partition, wait for their own clocks."""
    import asyncio

    from headwater.projects.model import Project

    hour = 60 * MIN
    start = 1_795_348_740_000

    def record(partition: int, offset: int, project: str, visitor: str, at_ms: int):
        envelope = Envelope(project, f"{project}-{visitor}-{offset}", at_ms, "r",
                            {"type": "page", "anonymousId": visitor})
        envelope.enriched["page"] = {"path": "/"}
        return step_record([envelope], partition, offset)

    async def scenario() -> None:
        book = book_for(Project("shop", "Shop", 0), Project("blog", "Blog", 0))
        sessionize(book, as_poll(record(0, 0, "shop", "a", start), record(0, 1, "blog", "b", start),
                                        record(1, 0, "shop", "c", start)))
        later = start + 3 * hour  # past 30 minutes of inactivity and an hour of allowed lateness
        _, rows, touched = sessionize(book, as_poll(record(0, 2, "shop", "d", later)))
        visitors = {n: book.partitions[n].visitors for n in (0, 1)}
        assert visitors[0]["shop:a"].session is None  # closed
        assert visitors[0]["blog:b"].session is not None and visitors[1]["shop:c"].session is not None
        assert (0, "shop:a") in touched and (0, "blog:b") not in touched
        assert [row[2] for row in rows[0]] == ["d"]  # a's final row was its first (it never changed)

    asyncio.run(scenario())


def test_the_next_poll_is_worked_out_while_a_transaction_commits_and_dropped_if_it_aborts():
    """A poll's outputs are computed while the previous transaction is being committed; its own
    transaction begins only after that commit. When the previous one aborts, the poll's work is
    dropped (the state is restored and its records read again) and no transaction begins for it."""
    import asyncio

    from aiokafka import TopicPartition
    from aiokafka.errors import KafkaTimeoutError
    from aiokafka.structs import ConsumerRecord

    from processors.session_book import SessionBook
    from tests.fakes import FakeConsumer, FakeProducer

    tp = TopicPartition("headwater.step.sessionize", 0)

    def poll(offset: int) -> dict:
        return {tp: [ConsumerRecord(tp.topic, 0, offset, 0, 0, b"k", b"[]", None, 0, 0, [])]}

    async def run(first_commit_fails: bool) -> list:
        calls, release = [], asyncio.Event()

        class Noted(SessionBook):  # notes when each poll's outputs are worked out
            def poll(self, batch, now):
                calls.append(("outputs", batch[tp][0].offset))
                return [], 0

        producer = FakeProducer(calls, commit_gate=release,
                                commit_errors=[KafkaTimeoutError()] if first_commit_fails else [])
        sessionizer = sessionizer_with(book_for(kind=Noted), FakeConsumer(calls, {tp}), producer)
        await asyncio.wait_for(sessionizer.handle(poll(1)), 2)  # returns with its transaction in flight
        await asyncio.sleep(0)  # the transaction begins and waits for its commit
        handling = asyncio.create_task(sessionizer.handle(poll(2)))
        await asyncio.sleep(0.01)
        calls.append("released")
        release.set()
        await handling
        await sessionizer.settle()
        return calls

    assert asyncio.run(run(False)) == [("outputs", 1), "begin", ("offsets", 2), ("outputs", 2), "released", "commit",
                                       "begin", ("offsets", 3), "commit"]
    assert asyncio.run(run(True)) == [("outputs", 1), "begin", ("offsets", 2), ("outputs", 2), "released", "abort",
                                      "seek_to_committed"]


def test_the_changelog_value_restores_the_state_and_its_last_row_and_reads_the_old_format():
    """A changelog value is a compact array; what it restores writes the same rows afterwards as the
    state it was made from (the cancel row must match the row written before). Values an older
    release wrote (a JSON object) still restore."""
    import dataclasses

    from processors import session_changelog

    state, _ = run(event(0, path="/a"), event(1, path="/b"))
    state.rows("shop", "v")  # a row written for two events
    for envelope, ts in (event(2, path="/c"), event(3, kind="track")):
        state.apply(envelope, ts, OPTIONS)
    value = session_changelog.dump(state, 3 * MIN)
    old_format = orjson.dumps({**vars(state), "watermark_ms": 3 * MIN})
    assert len(value) < len(old_format) / 2
    for saved in (value, old_format):
        restored, watermark = session_changelog.load(saved, "shop")
        assert watermark == 3 * MIN
        assert dataclasses.asdict(restored) == dataclasses.asdict(state)
        assert restored.rows("shop", "v") == dataclasses.replace(state).rows("shop", "v")
    closed = VisitorState(sessions=3, last_ms=5, recent=[])
    assert session_changelog.load(session_changelog.dump(closed, 0), "shop")[0] == closed


def test_an_unreadable_changelog_value_is_logged_and_the_visitor_starts_afresh():
    from aiokafka.structs import ConsumerRecord

    from processors.session_book import Partition

    book = book_for()
    book.partitions = {0: Partition()}
    book.partitions[0].visitors["shop:v"] = VisitorState(sessions=1)
    for value in (b"[9]", b"not json", b'{"unknown": 1}'):
        record = ConsumerRecord("state", 0, 7, 0, 0, b"shop:v", value, None, 0, 0, [])
        book.restore_record(0, record)
        assert "shop:v" not in book.partitions[0].visitors


def test_the_sessionizer_reads_the_visits_beside_the_events_and_passes_the_events_on_as_they_came():
    """The step before the book sends each event's visit beside it; the book decodes the
    visits only and forwards the record's bytes with each event's session in a header. The sessions
    are those it works out from the events themselves. A record holding a copy is re-encoded without
    it; visits that do not match the events are ignored and the events decoded."""
    import asyncio

    from aiokafka.structs import ConsumerRecord

    from headwater.projects.model import Project
    from headwater.routing import EVENTS_HEADER, SESSIONS_HEADER, VISITS_HEADER, header_value
    from processors.base import encode_groups

    def envelope(n: int, kind: str = "page") -> Envelope:
        made = Envelope("shop", f"m{n}", 1_795_348_740_000 + n * 1000, "r",
                        {"type": kind, "anonymousId": "v", "properties": {"n": n}}, "81.2.69.0", "UA")
        made.enriched.update(page={"path": f"/p{n}", "url": f"https://x/p{n}"}, ua={"browser": "Firefox"},
                             referrer={"url": "https://t.co/", "source": "Twitter", "medium": "social"})
        return made

    def record(offset: int, envelopes: list[Envelope], drop_visits: bool = False, count: int = 0):
        out, = encode_groups("headwater.step.sessionize", ("sessionize", "index"), envelopes)
        headers = [(k, str(count).encode() if count and k == EVENTS_HEADER else v) for k, v in out.headers
                   if not (drop_visits and k == VISITS_HEADER)]
        return ConsumerRecord("headwater.step.sessionize", 0, offset, 0, 0, out.key, out.value, None, 0, 0, headers)

    async def scenario() -> list:
        results = []
        for drop_visits in (False, True):
            book = book_for(Project("shop", "Shop", 0))
            first = record(0, [envelope(1), envelope(2, "track"), envelope(3)], drop_visits)
            outputs, rows, _ = sessionize(book, as_poll(first))
            out, = outputs
            sessions = header_value(out.headers, SESSIONS_HEADER)
            if sessions is None:
                sessions = [[e["enriched"]["session"]["id"], e["enriched"]["session"]["seq"]]
                            for e in orjson.loads(out.value)]
            else:
                sessions = orjson.loads(sessions)
                assert out.value == first.value and header_value(out.headers, EVENTS_HEADER) == b"3"
            results.append((sessions, [row[8:12] for row in rows[0]]))
        assert results[0] == results[1]  # the same sessions whichever way they were read

        book = book_for(Project("shop", "Shop", 0))
        copy = record(1, [envelope(3), envelope(4)])
        mismatched = record(2, [envelope(5)], count=2)
        sessionize(book, as_poll(record(0, [envelope(3)])))
        outputs, _, _ = sessionize(book, as_poll(copy, mismatched))
        forwarded = [e for out in outputs for e in orjson.loads(out.value)]
        assert [e["message_id"] for e in forwarded] == ["m4", "m5"]
        assert [e["enriched"]["session"]["seq"] for e in forwarded] == [2, 3]
        assert all(header_value(out.headers, SESSIONS_HEADER) is None for out in outputs)
        return results

    sessions, rows = asyncio.run(scenario())[0]
    assert [seq for _, seq in sessions] == [1, 2, 3] and len({sid for sid, _ in sessions}) == 1
    assert rows == [[2, 3, "/p1", "/p3"]]  # pageviews, events, entry and exit page of the new session


def test_only_records_for_the_sessionizer_carry_visits():
    from headwater.routing import VISITS_HEADER, header_value
    from processors.base import encode_groups

    events = [Envelope("shop", "m1", 0, "r", {"type": "page", "anonymousId": "v", "context": {"ip": "x"}}, "x")]
    to_sessionize, = encode_groups("t", ("sessionize", "index"), events)
    to_index, = encode_groups("t", ("index",), events)
    visits = orjson.loads(header_value(to_sessionize.headers, VISITS_HEADER))
    assert visits == [{"project_id": "shop", "message_id": "m1", "received_at_ms": 0, "request_id": "",
                       "event": {"type": "page", "anonymousId": "v"}, "enriched": {}}]
    assert header_value(to_index.headers, VISITS_HEADER) is None


def test_the_exit_page_is_the_latest_pageview_by_event_time_whatever_the_arrival_order():
    """A page /a at 10:00, a track at 10:02, then a page /b at 10:01: /b is the exit page."""
    state, _ = run(event(0, path="/a"), event(2, kind="track"), event(1, path="/b"))
    assert state.session["exit_page"] == "/b" and state.session["entry_page"] == "/a"
    state, _ = run(event(5, path="/b"), event(6, kind="track"), event(4, path="/a"))
    assert state.session["entry_page"] == "/a" and state.session["exit_page"] == "/b"


def test_a_screen_after_a_page_names_the_exit_by_the_screen_and_never_blanks_it():
    page, ts = event(0, path="/a")
    screen = Envelope("shop", "m-screen", 0, "r", {"type": "screen", "anonymousId": "v", "name": "Checkout"})
    nameless = Envelope("shop", "m-nameless", 0, "r", {"type": "screen", "anonymousId": "v"})
    state, _ = run((page, ts), (screen, 1 * MIN))
    assert state.session["exit_page"] == "Checkout"
    state.apply(nameless, 2 * MIN, OPTIONS)
    assert state.session["exit_page"] == "Checkout" and state.session["pageviews"] == 3


def test_a_screens_name_reaches_the_sessionizer_in_its_visit():
    from processors.sessions import visit

    screen = Envelope("shop", "m", 0, "r", {"type": "screen", "anonymousId": "v", "name": "Home"})
    assert visit(screen)["enriched"]["page"] == {"path": "Home"}


def test_session_rows_keep_the_duration_in_milliseconds():
    from headwater.migrations.columns import SESSION_COLUMNS

    state, _ = run(event(0), (event(0)[0], 1_234))
    row = dict(zip(SESSION_COLUMNS, state.rows("shop", "v")[-1]))
    assert row["duration_ms"] == 1_234 and row["duration_s"] == 1


def test_an_older_sessionizers_row_gets_its_duration_in_milliseconds():
    from headwater.migrations.columns import SESSION_COLUMNS
    from indexer.rows import session_row as table_row

    state, _ = run(event(0), (event(0)[0], 61_500))
    row = state.rows("shop", "v")[-1]
    older = row[:7] + row[8:-5] + row[-4:]  # what a sessionizer before duration_ms and is_bot wrote
    assert table_row(older) == table_row(row)
    assert len(table_row(row)) == len(SESSION_COLUMNS)


def test_a_format_2_changelog_value_restores_with_its_pages_times_from_the_session():
    from processors import session_changelog

    state, _ = run(event(0, path="/a"), event(3, path="/b"))
    current = orjson.loads(session_changelog.dump(state, 0))
    current[0], current[7] = 2, current[7][:len(session_changelog.FORMAT_2_SESSION_FIELDS)]
    restored, _ = session_changelog.load(orjson.dumps(current), "shop")
    assert restored.session["entry_ms"] == 0 and restored.session["exit_ms"] == 3 * MIN
    assert restored.session == state.session


def test_a_far_future_event_does_not_move_the_projects_clock_past_its_receive_time():
    """Sixteen events dated 9999 must not push the project's clock so far ahead that every new visitor
    is too late for a session."""
    import asyncio

    from headwater.projects.model import Project

    now = 1_795_348_740_000

    def record(offset: int, visitor: str, timestamp: str):
        envelope = Envelope("shop", f"m-{offset}", now, "r",
                            {"type": "page", "anonymousId": visitor, "timestamp": timestamp})
        envelope.enriched["page"] = {"path": "/"}
        return step_record([envelope], 0, offset)

    async def scenario() -> None:
        book = book_for(Project("shop", "Shop", 0))
        future = [record(n, f"f{n}", "9999-12-31T00:00:00Z") for n in range(16)]
        sessionize(book, as_poll(*future))
        assert book.partitions[0].watermarks["shop"] <= now
        sessionize(book, as_poll(record(16, "newcomer", "2026-11-22T12:00:00Z")))
        assert book.too_late == 0
        assert book.partitions[0].visitors["shop:newcomer"].session is not None

    asyncio.run(scenario())
