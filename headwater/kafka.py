"""Kafka helpers shared by every role: producer and consumer factories, topic creation, readiness."""

from __future__ import annotations

import asyncio
import time

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, OutOfOrderSequenceNumber, TopicAlreadyExistsError, UnknownProducerId
from aiokafka.helpers import create_ssl_context

from headwater.errors import FatalError
from headwater.partitioning import partition_of
from headwater.settings import Settings
from headwater.topics import TOPIC_MAX_MESSAGE_BYTES, topic_specs

# After a broker restart with messages in flight an idempotent producer's sequence numbers can disagree
# with the broker's; it then fails every later send to the partition and must be replaced.
PRODUCER_BROKEN = (OutOfOrderSequenceNumber, UnknownProducerId)
log = structlog.get_logger()
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSIONS = ("zstd", "lz4", "snappy", "gzip", "none")


def kafka_connection(settings: Settings) -> dict:
    """How every Kafka client of Headwater reaches the brokers: bootstrap servers, TLS and SASL."""
    protocol = settings.kafka_security_protocol.upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise FatalError(f"kafka_security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}")
    options: dict = {"bootstrap_servers": settings.kafka_bootstrap, "security_protocol": protocol}
    if protocol.endswith("SSL"):
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile or None)
    if protocol.startswith("SASL"):
        if settings.kafka_sasl_mechanism not in SASL_MECHANISMS:
            raise FatalError(f"kafka_sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}")
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    return options


def compression_type(settings: Settings, setting: str = "kafka_compression") -> str | None:
    """The producer codec that ``setting`` (``kafka_compression`` or ``collector_compression``) names."""
    value = getattr(settings, setting)
    if value not in COMPRESSIONS:
        raise FatalError(f"{setting} must be one of {', '.join(COMPRESSIONS)}, not {value!r}")
    return None if value == "none" else value


def make_producer(settings: Settings, **overrides) -> AIOKafkaProducer:
    """A durable producer: ``acks=all`` and idempotence, so a send is acknowledged only once it is
    written to every in-sync replica, and retries never duplicate within a producer session."""
    options = dict(
        **kafka_connection(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.producer_linger_ms,
        compression_type=compression_type(settings),
        max_batch_size=512 * 1024,
        max_request_size=TOPIC_MAX_MESSAGE_BYTES,
        request_timeout_ms=int(settings.produce_timeout_s * 1000),
    )
    options.update(overrides)
    return AIOKafkaProducer(**options)


def fetch_limits(settings: Settings, codec_setting: str = "kafka_compression") -> dict:
    """How many bytes one fetch brings from topics written with the codec ``codec_setting`` names.
    Compressed batches count compressed: a JSON batch shrinks about tenfold, so the compressed limits
    are a tenth, which keeps a poll (and the process's memory) about the same size either way."""
    scale = 1 if getattr(settings, codec_setting) == "none" else 10
    partition_bytes = 1024 * 1024 // scale
    # The broker counts at most a partition's limit of each partition towards fetch_min_bytes, so a
    # minimum above what one partition can give would make a consumer with one partition (or a backlog
    # held by few) wait fetch_max_wait_ms on every fetch, even with megabytes waiting.
    return {"max_partition_fetch_bytes": partition_bytes, "fetch_max_bytes": 16 * 1024 * 1024 // scale,
            "fetch_min_bytes": min(settings.fetch_min_bytes, partition_bytes),
            "fetch_max_wait_ms": settings.fetch_max_wait_ms}


def make_consumer(settings: Settings, topics: list[str], group_id: str, **overrides) -> AIOKafkaConsumer:
    """A consumer with auto-commit off: callers commit offsets only after their output is durable.

    It reads committed data only, so records of an aborted transaction (the sessionizer writes
    transactionally) are never seen."""
    options = dict(
        **kafka_connection(settings),
        group_id=group_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        **fetch_limits(settings),
    )
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def send_in_batches(producer: AIOKafkaProducer, outputs: list, partition_count) -> list[asyncio.Future]:
    """Send ``outputs`` (:class:`headwater.relay_types.Output`) as whole record batches, one or more
    per topic partition, keeping their order; return the futures of the batches' acknowledgements.

    For many small records (the sessionizer's changelog: one a visitor a poll) this costs about
    1.7 µs of CPU a record against 8 for ``send()``, which makes a future and looks up the partition
    for each. An output without a partition goes where the producer's default partitioner would put
    it (``partition_count(topic)`` partitions, murmur2 of the key). Works inside a transaction."""
    groups: dict[tuple[str, int], list] = {}
    for out in outputs:
        partition = out.partition if out.partition is not None else partition_of(out.key, partition_count(out.topic))
        groups.setdefault((out.topic, partition), []).append(out)
    deliveries = []
    for (topic, partition), group in groups.items():
        batch = producer.create_batch()
        for out in group:
            if batch.append(key=out.key, value=out.value, timestamp=None, headers=out.headers) is None:  # full
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=out.key, value=out.value, timestamp=None, headers=out.headers)
        deliveries.append(await producer.send_batch(batch, topic, partition=partition))
    return deliveries


async def ensure_topics(settings: Settings) -> list[str]:
    """Create every topic in :func:`topic_specs` that does not exist yet; return the created names."""
    admin = AIOKafkaAdminClient(**kafka_connection(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if missing:
            new = [NewTopic(s.name, s.partitions, 1, topic_configs=s.config) for s in missing]
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        return [spec.name for spec in missing]
    finally:
        await admin.close()


async def wait_for_broker(settings: Settings, timeout_s: float = 60.0) -> None:
    """Return once the broker answers a metadata request; raise ``TimeoutError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(**kafka_connection(settings), request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.describe_cluster()
            return
        except (KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Kafka at {settings.kafka_bootstrap} did not answer: {exc}") from exc
        finally:
            await admin.close()
        await asyncio.sleep(0.5)


async def stop_replaced(producer: AIOKafkaProducer, timeout_s: float = 5.0) -> None:
    """Stop a producer that was replaced because a broker restart broke it (``PRODUCER_BROKEN``) or
    fenced it: within ``timeout_s``, as it may wait on a broker that is away; a failure is only logged
    (its unacknowledged sends were failed or will be sent again by the caller)."""
    try:
        await asyncio.wait_for(producer.stop(), timeout_s)
    except (TimeoutError, KafkaError) as exc:
        log.warning("old_producer_stop_failed", error=str(exc) or type(exc).__name__)
