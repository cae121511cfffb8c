"""Processors: one module per step of the flow, all behind :class:`processors.base.Processor`."""
