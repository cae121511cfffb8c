"""One module per enrichment. Each is a pure function of its input (a user agent, an IP, a URL)."""
