"""How many cases each fuzzing property ran, printed at the end of the test session (conftest.py)."""

CASES: dict[str, int] = {}


def counted(name: str) -> None:
    CASES[name] = CASES.get(name, 0) + 1
