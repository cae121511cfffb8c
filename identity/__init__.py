"""The identity role: merges distinct ids into persons (identify, alias) and keeps them durable."""
