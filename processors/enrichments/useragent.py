"""User agent -> browser, OS, device and a bot flag: ua-parser (its Rust resolver, ua-parser-rs, is
picked up automatically) for the first three, and the maintained crawler list of
``crawler-user-agents`` (MIT, about 1,500 patterns, updated monthly) for the flag, matched at once by
one RE2 pattern (linear time, about 3 µs a user agent); both behind an LRU cache."""

from __future__ import annotations

import functools

import crawleruseragents
import ua_parser

from headwater.regex import compile_alternatives

CRAWLERS = compile_alternatives([entry["pattern"] for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA])


def _version(part) -> str:
    return ".".join(p for p in (part.major, part.minor, part.patch) if p) if part else ""


def is_crawler(user_agent: str) -> bool:
    return CRAWLERS.search(user_agent) is not None


def parse_user_agent(user_agent: str) -> dict:
    result = ua_parser.parse(user_agent)
    device = result.device.family if result.device else "Other"
    return {
        "browser": result.user_agent.family if result.user_agent else "Other",
        "browser_version": _version(result.user_agent),
        "os": result.os.family if result.os else "Other",
        "os_version": _version(result.os),
        "device": device,
        "is_bot": device == "Spider" or is_crawler(user_agent),
    }


def make_parser(cache_size: int):
    return functools.lru_cache(maxsize=cache_size)(parse_user_agent)
