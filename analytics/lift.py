"""Which steps and first-touch properties go with converting more or less often, and whether that could
be chance: the statistics over :func:`analytics.discovery.drivers_query`'s counts.

For each feature, the visitors split into those exposed to it and the rest, and into those who
converted and the rest (a 2×2 table). The **lift** is the relative risk: the exposed visitors'
conversion rate over the rest's, with its 95% confidence interval (Katz's log method, as
``scipy.stats.contingency.relative_risk`` computes it). The **p-value** is Fisher's exact test of the
table, two-sided. Since every feature is a test, the p-values are **adjusted** for their number by
Holm's step-down method: a feature is *significant* when its adjusted p-value is under ``alpha``, which
keeps the chance that any feature without an effect is called significant under ``alpha``, whatever
the number tested (Benjamini–Hochberg's false discovery rate, the other common choice, lets a few
through among many real findings, and a team acts on each one shown).

This is association, not cause: visitors who view a pricing page may convert more because they came
intending to buy. And for converters only what they did before converting counts, while the others'
whole range does, so a step done at any time by everyone shows a lift a little under 1.
"""

from __future__ import annotations

import dataclasses
import math

from scipy.stats import fisher_exact
from scipy.stats.contingency import relative_risk

ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class Driver:
    """One feature's table and test. ``lift`` is ``None`` when no visitor outside the feature converted
    (an infinite ratio), ``low`` and ``high`` when the interval cannot be computed (a zero count)."""
    dimension: str
    value: str
    visitors: int
    converted: int
    rate: float
    rest_rate: float
    lift: float | None
    low: float | None
    high: float | None
    p_value: float
    p_adjusted: float
    significant: bool

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class Drivers:
    visitors: int
    converted: int
    tested: int
    alpha: float
    drivers: list[Driver]

    @property
    def rate(self) -> float:
        return self.converted / self.visitors if self.visitors else 0.0


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def drivers(rows: list[dict], alpha: float = ALPHA) -> Drivers:
    """The drivers in ``rows`` (a ``('', '')`` row with every visitor, then one per feature), tested
    and adjusted; significant ones first, then by adjusted p-value and the size of the effect."""
    everyone = next((r for r in rows if r["dimension"] == "" and r["value"] == ""), None)
    if everyone is None:
        return Drivers(0, 0, 0, alpha, [])
    total, converted = int(everyone["visitors"]), int(everyone["converted"])
    tables = []
    for r in rows:
        exposed, exposed_converted = int(r["visitors"]), int(r["converted"])
        rest, rest_converted = total - exposed, converted - exposed_converted
        if r is everyone or rest <= 0 or exposed <= 0:
            continue  # a feature every visitor has compares them with no one
        tables.append((r, exposed, exposed_converted, rest, rest_converted))
    if not tables:
        return Drivers(total, converted, 0, alpha, [])
    p_values = [fisher_exact([[a, n - a], [c, m - c]]).pvalue for _r, n, a, m, c in tables]
    adjusted = holm(p_values)
    found = [_driver(r, n, a, m, c, p, q, alpha) for (r, n, a, m, c), p, q in zip(tables, p_values, adjusted)]
    found.sort(key=lambda d: (not d.significant, d.p_adjusted, -abs(math.log(d.lift)) if d.lift else -math.inf,
                              d.dimension, d.value))
    return Drivers(total, converted, len(tables), alpha, found)


def _driver(row: dict, exposed: int, exposed_converted: int, rest: int, rest_converted: int, p: float, q: float,
            alpha: float) -> Driver:
    low = high = lift = None
    if rest_converted > 0:
        ratio = relative_risk(exposed_converted, exposed, rest_converted, rest)
        lift = _finite(ratio.relative_risk)
        if exposed_converted > 0:
            interval = ratio.confidence_interval(0.95)
            low, high = _finite(interval.low), _finite(interval.high)
    return Driver(row["dimension"], row["value"], exposed, exposed_converted, exposed_converted / exposed,
                  rest_converted / rest, lift, low, high, float(p), float(q), bool(q < alpha))


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given: the i-th smallest is multiplied by the
    number of tests from it on, made non-decreasing, and capped at 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [1.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, p_values[i] * (len(p_values) - rank)))
        adjusted[i] = running
    return adjusted
