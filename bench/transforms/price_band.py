"""The Python transformation `make bench` measures: reads two fields, writes one."""
VERSION = "1.0.0"


def transform(event, context):
    properties = event.setdefault("properties", {})
    properties["band"] = "high" if properties.get("price", 0) >= 10 else "low"
    return event
