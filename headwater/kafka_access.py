"""Who may do what on Kafka: the users of a deployment and their ACLs, in one place.

The Compose file and the chart run Kafka with SASL and Kafka's StandardAuthorizer, and nothing is
allowed that an ACL below does not allow (``allow.everyone.if.no.acl.found=false``). Each role logs in
as one of four users:

- ``admin``: the broker's own super user; the topic Job creates topics and these ACLs with it;
- ``collector``: the internet-facing role. Writes the raw topic, reads the project registry and the
  tag manager's containers, and nothing else: a compromised collector can neither rewrite a project
  (origins, privacy policy) or a container nor read events;
- ``pipeline``: the mediator, the processors and the indexers. Reads and writes the pipeline's
  topics, groups and transactions; denied writes to the project registry and the containers;
- ``control``: the admin API, the dashboard (replay) and the operator's commands (``project``,
  ``migrate``, ``replay``). Everything under the topic prefix.

:func:`acl_arguments` gives the ``kafka-acls.sh`` arguments; ``headwater deploy render`` writes them into
the Compose file's topic job and the chart's ``files/acls.json``, and the test suite runs the same
commands against a secured broker (tests/test_kafka_access.py).
"""

from __future__ import annotations

import dataclasses

from headwater.settings import Settings
from headwater.topics import projects_topic, raw_topic, tags_topic

BROKER_ADMIN = "admin"
USERS = ("collector", "pipeline", "control")
CONTROL_ROLES = {"admin", "dashboard", "migrate", "project", "replay", "lag-exporter"}


def user_of(role: str) -> str:
    """The Kafka user a role logs in as."""
    if role == "collector":
        return "collector"
    return "control" if role in CONTROL_ROLES else "pipeline"


@dataclasses.dataclass(frozen=True)
class Acl:
    user: str
    resource: str  # topic, group, transactional-id
    name: str
    operations: tuple[str, ...]
    prefixed: bool = False
    deny: bool = False


def acls(settings: Settings) -> list[Acl]:
    prefix = settings.topic_prefix
    registry, raw, tags = projects_topic(settings), raw_topic(settings), tags_topic(settings)
    everything = ("Read", "Write", "Describe", "Create", "DescribeConfigs")
    return [
        Acl("collector", "topic", raw, ("Write", "Describe")),
        Acl("collector", "topic", registry, ("Read", "Describe")),
        Acl("collector", "topic", tags, ("Read", "Describe")),
        Acl("pipeline", "topic", prefix + ".", ("Read", "Write", "Describe"), prefixed=True),
        Acl("pipeline", "topic", registry, ("Write",), deny=True),
        Acl("pipeline", "topic", tags, ("Write",), deny=True),
        Acl("pipeline", "group", prefix + "-", ("Read", "Describe"), prefixed=True),
        Acl("pipeline", "transactional-id", prefix + "-", ("Write", "Describe"), prefixed=True),
        Acl("control", "topic", prefix + ".", everything, prefixed=True),
        Acl("control", "group", prefix + "-", ("Read", "Describe", "Delete"), prefixed=True),
    ]


def acl_arguments(acl: Acl) -> list[str]:
    """The ``kafka-acls.sh`` arguments that add ``acl`` (without the connection options)."""
    principal = ["--deny-principal" if acl.deny else "--allow-principal", f"User:{acl.user}"]
    operations = [part for operation in acl.operations for part in ("--operation", operation)]
    pattern = ["--resource-pattern-type", "prefixed" if acl.prefixed else "literal"]
    return ["--add", "--force", *principal, *operations, f"--{acl.resource}", acl.name, *pattern]


def broker_sasl_properties(passwords: dict[str, str]) -> dict[str, str]:
    """The broker settings for SASL/PLAIN on the client and controller listeners, with the
    StandardAuthorizer; ``passwords`` maps every user (``admin`` included) to its password."""
    users = " ".join(f'user_{user}="{password}"' for user, password in passwords.items())
    jaas = (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{BROKER_ADMIN}" '
            f'password="{passwords[BROKER_ADMIN]}" {users};')
    return {
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
        "listener.name.controller.plain.sasl.jaas.config": jaas,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{BROKER_ADMIN}",
        "allow.everyone.if.no.acl.found": "false",
    }


def client_properties(user: str, password: str) -> str:
    """A Kafka command-line tool's ``--command-config`` for ``user``."""
    return "\n".join([
        "security.protocol=SASL_PLAINTEXT", "sasl.mechanism=PLAIN",
        f'sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required '
        f'username="{user}" password="{password}";', ""])
