"""Marks large orders: changes an event."""
VERSION = "1.4.0"


def transform(event, context):
    total = event.get("properties", {}).get("total", 0)
    event["properties"]["tier"] = "gold" if total >= 100 else "standard"
    return event
