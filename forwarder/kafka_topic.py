"""The Kafka destination: each event as one record on the team's own topic, on their own cluster.

Settings: ``bootstrap_servers`` (``host:port,...``), ``topic``, and optionally ``security_protocol``
(``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL``), ``sasl_mechanism`` (``PLAIN``,
``SCRAM-SHA-256``, ``SCRAM-SHA-512``), ``username`` and ``password`` (a secret). Records are keyed by
the visitor (``anonymousId``, else ``userId``), so the default partitioner keeps each visitor's
events in one partition, in order; the value is the event as JSON.

At least once: the producer is idempotent with ``acks=all``, and a batch counts as delivered when
every record of it is acknowledged; a batch retried after a failure or a crash may repeat records
(each carries its ``messageId``). The bootstrap addresses are checked as every destination's are
(:mod:`forwarder.addresses`); the brokers they name in their metadata are the cluster's own.
"""

from __future__ import annotations

import asyncio
import re

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from forwarder.addresses import AddressRefused, resolve
from forwarder.outcomes import Delivered, Item, Outcome, Refused, Retry
from headwater.destinations import DestinationSpec
from headwater.settings import Settings

SETTINGS = frozenset({"bootstrap_servers", "topic", "security_protocol", "sasl_mechanism", "username", "password"})
TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
SERVER = re.compile(r"[A-Za-z0-9.-]+:\d{1,5}")
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
REFUSED = (InvalidTopicError, TopicAuthorizationFailedError)


class KafkaTopic:
    @staticmethod
    def check(settings: dict, deployment: Settings) -> list[str]:
        problems = []
        if set(settings) - SETTINGS:
            problems.append(f"unknown settings {sorted(set(settings) - SETTINGS)}; a kafka destination has "
                            f"{sorted(SETTINGS)}")
        servers = settings.get("bootstrap_servers")
        if not isinstance(servers, str) or not all(SERVER.fullmatch(s.strip()) for s in servers.split(",")):
            problems.append("bootstrap_servers: host:port[,host:port...]")
        if not isinstance(settings.get("topic"), str) or not TOPIC.fullmatch(settings["topic"]):
            problems.append("topic: a Kafka topic name")
        if settings.get("security_protocol", "PLAINTEXT") not in PROTOCOLS:
            problems.append(f"security_protocol: one of {', '.join(PROTOCOLS)}")
        if settings.get("sasl_mechanism", "PLAIN") not in MECHANISMS:
            problems.append(f"sasl_mechanism: one of {', '.join(MECHANISMS)}")
        return problems

    def __init__(self, spec: DestinationSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.topic = spec.settings["topic"]
        self.servers = [s.strip() for s in spec.settings["bootstrap_servers"].split(",")]
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        pass  # connected at the first delivery, so an unreachable cluster is a retry, not a failed start

    async def deliver(self, items: list[Item], batch_id: str) -> Outcome:
        try:
            producer = await self._producer()
            sent = [await producer.send(self.topic, orjson.dumps(item.event), key=item.visitor.encode() or None)
                    for item in items]
            await asyncio.gather(*sent)
        except AddressRefused as exc:
            return Refused(str(exc))
        except MessageSizeTooLargeError as exc:
            return Refused(f"a record is too large for the topic: {exc}", per_event=True)
        except REFUSED as exc:
            return Refused(f"{type(exc).__name__}: {exc}")
        except (KafkaError, OSError) as exc:
            await self._drop_producer()  # a new one next time: an unacknowledged send may be in any state
            if isinstance(exc, UnknownTopicOrPartitionError):
                return Retry(f"the topic {self.topic} does not exist (yet)")
            return Retry(f"{type(exc).__name__}: {exc}")
        return Delivered()

    async def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            for server in self.servers:
                host, port = server.rsplit(":", 1)
                await resolve(host, int(port), self.settings.forward_private_networks)
            options = {"security_protocol": self.spec.settings.get("security_protocol", "PLAINTEXT")}
            if options["security_protocol"].startswith("SASL"):
                options.update(sasl_mechanism=self.spec.settings.get("sasl_mechanism", "PLAIN"),
                               sasl_plain_username=self.spec.settings.get("username", ""),
                               sasl_plain_password=self.spec.settings.get("password", ""))
            producer = AIOKafkaProducer(bootstrap_servers=self.servers, acks="all", enable_idempotence=True,
                                        linger_ms=5, request_timeout_ms=int(self.settings.forward_timeout_s * 1000),
                                        client_id=f"headwater-forwarder-{self.spec.key}", **options)
            try:
                await asyncio.wait_for(producer.start(), self.settings.forward_timeout_s)
            except BaseException:
                await producer.stop()
                raise
            self.producer = producer
        return self.producer

    async def _drop_producer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                await producer.stop()
            except (KafkaError, OSError):
                pass

    async def stop(self) -> None:
        await self._drop_producer()
