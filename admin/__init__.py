"""The configurator (admin) API: projects, keys and origins, behind an admin token on its own port."""
