"""Headwater: a self-hosted, Kafka-backed streaming analytics pipeline."""

__version__ = "0.1.0"
