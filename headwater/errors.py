"""Errors that stop a role on purpose: the process exits loudly, with every reason, rather than
carrying on in a state that would lose or misroute events."""


class FatalError(Exception):
    """Raised to stop a role; the runner logs it and exits with status 2."""
