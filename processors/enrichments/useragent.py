"""User agent -> browser, OS, device and a bot flag, with ua-parser (its Rust resolver,
ua-parser-rs, is picked up automatically) behind an LRU cache."""

from __future__ import annotations

import functools
import re

import ua_parser

BOT = re.compile(r"bot|crawl|spider|slurp|headless|lighthouse|pingdom|uptime|monitor|curl|wget|python-"
                 r"|httpclient|java/|go-http|preview|facebookexternalhit|scrapy", re.IGNORECASE)


def _version(part) -> str:
    return ".".join(p for p in (part.major, part.minor, part.patch) if p) if part else ""


def parse_user_agent(user_agent: str) -> dict:
    result = ua_parser.parse(user_agent)
    device = result.device.family if result.device else "Other"
    return {
        "browser": result.user_agent.family if result.user_agent else "Other",
        "browser_version": _version(result.user_agent),
        "os": result.os.family if result.os else "Other",
        "os_version": _version(result.os),
        "device": device,
        "is_bot": device == "Spider" or bool(BOT.search(user_agent)),
    }


def make_parser(cache_size: int):
    return functools.lru_cache(maxsize=cache_size)(parse_user_agent)
