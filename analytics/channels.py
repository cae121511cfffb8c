"""Channels: what kind of traffic brought a visit (Paid Search, Organic Social, Email, Direct …), by an
ordered rule table read at query time, so a change of the rules applies to every event already stored.

A visit's facts are its campaign tags (``utm_source``, ``utm_medium``) and its referrer's medium as the
enrich step classified it (``referrer_medium``: search, social, ai, email, referral, internal, direct).
A Google Ads or Microsoft Ads click that carries only its click id reads as ``google``/``bing`` with the
medium ``cpc`` (the enrich step fills them, as Google Analytics reports auto-tagged clicks). The first
rule that holds names the channel; the rules follow Google Analytics 4's default channel group, with
the source lists of :mod:`headwater.referrers` (a ``utm_source`` is a search engine when it is one of
their search engines' names: ``google``, ``bing``, ``duckduckgo`` …).

Both ``events`` and ``sessions`` have these columns, so :data:`CHANNEL_SQL` works on either: an event's
own channel, or a session's, by its first event.
"""

from __future__ import annotations

import dataclasses

from headwater.referrers import names

MEDIUM, SOURCE = "lower(utm_medium)", "lower(utm_source)"
PAID_MEDIUM = "^(.*cp.*|ppc|retargeting|paid.*)$"  # Google Analytics' paid mediums: cpc, cpm, ppc, paid_social …
DISPLAY_MEDIUMS = ("display", "banner", "expandable", "interstitial", "cpm")
EMAIL_TAGS = ("email", "e-mail", "e_mail", "e mail", "newsletter")
SOCIAL_MEDIUMS = ("social", "social-network", "social-media", "sm", "social network", "social media")
REFERRAL_MEDIUMS = ("referral", "app", "link")
DEFAULT = "Unassigned"


def _text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _among(expression: str, values: tuple[str, ...]) -> str:
    return f"{expression} IN ({', '.join(_text(v) for v in values)})"


def _from(medium: str) -> str:
    """Traffic from a medium's services: the referrer is one, or the ``utm_source`` names one."""
    return f"(referrer_medium = '{medium}' OR {_among(SOURCE, names(medium))})"


_PAID = f"match({MEDIUM}, '{PAID_MEDIUM}')"


@dataclasses.dataclass(frozen=True)
class Rule:
    channel: str
    when: str  # what the docs say
    sql: str


RULES = (
    Rule("Paid Search", "a paid medium, from a search engine", f"{_PAID} AND {_from('search')}"),
    Rule("Paid Social", "a paid medium, from a social network", f"{_PAID} AND {_from('social')}"),
    Rule("Display", "medium display, banner, expandable, interstitial or cpm", _among(MEDIUM, DISPLAY_MEDIUMS)),
    Rule("Paid Other", "a paid medium", _PAID),
    Rule("Email", "medium or source email, e-mail or newsletter, or a webmail referrer",
         f"({_among(MEDIUM, EMAIL_TAGS)} OR {_among(SOURCE, EMAIL_TAGS)} OR referrer_medium = 'email')"),
    Rule("Affiliates", "medium affiliate", f"{MEDIUM} = 'affiliate'"),
    Rule("Organic Search", "from a search engine, or medium organic", f"({_from('search')} OR {MEDIUM} = 'organic')"),
    Rule("Organic Social", "from a social network, or a social medium (social, sm …)",
         f"({_from('social')} OR {_among(MEDIUM, SOCIAL_MEDIUMS)})"),
    Rule("AI Assistants", "from an AI assistant (ChatGPT, Perplexity …)", _from("ai")),
    Rule("Referral", "from another site, or medium referral, app or link",
         f"(referrer_medium = 'referral' OR {_among(MEDIUM, REFERRAL_MEDIUMS)})"),
    Rule("Direct", "no campaign tags, and no referrer or the site itself",
         "(utm_source = '' AND utm_medium = '' AND referrer_medium IN ('', 'direct', 'internal'))"),
)
CHANNELS = (*(rule.channel for rule in RULES), DEFAULT)


def _channel_sql() -> str:
    branches = ",\n        ".join(f"{rule.sql}, '{rule.channel}'" for rule in RULES)
    return f"multiIf(\n        {branches},\n        '{DEFAULT}')"


CHANNEL_SQL = _channel_sql()
