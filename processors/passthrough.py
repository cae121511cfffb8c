"""A step that forwards every event unchanged.

Used for flow steps whose real processor is not built yet, so the end-to-end path exists.
"""

from __future__ import annotations

from headwater.envelope import Envelope
from processors.base import Processor


class PassThrough(Processor):
    def __init__(self, settings, name: str) -> None:
        super().__init__(settings)
        self.name = name

    def process(self, envelope: Envelope) -> Envelope | None:
        return envelope
