"""The tag manager: containers of variables, triggers and tags (docs/tags.md)."""
