"""The local stack: real Kafka and ClickHouse servers started by the project itself, for `make up`,
`make test` and `make bench`. Not used in production, where operators run their own servers."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY_LOCAL = REPO_ROOT / "deploy" / "local"
