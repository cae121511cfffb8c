"""One event per line item of a cart: splits an event, and drops a cart without items."""
VERSION = "2.0.1"


def transform(event, context):
    items = event.get("properties", {}).get("items", [])
    return [dict(event, event="Item Viewed", properties={"sku": item}) for item in items] or None
