"""The collector: Headwater's public HTTP surface. It speaks Segment's HTTP tracking API."""
