"""Overruns any time budget."""
import time

VERSION = "0.1.0"


def transform(event, context):
    time.sleep(5)
    return event
