"""Raises on every event it is given."""
VERSION = "0.1.0"


def transform(event, context):
    return event["properties"]["no_such_field"]
