"""PII anonymisation: emails, IP addresses and phone numbers become ``<EMAIL>``, ``<IP_ADDRESS>``, ``<PHONE>``.

Built like datatrove's ``PIIFormatter`` (its email pattern, ``ipaddress`` validation) but with fixed
placeholders instead of look-alike fake addresses, IPv6, phone numbers, and per-kind counts.

Phone numbers are the risky part: a regex that finds "+358 40 123 4567" also finds dates, version
numbers, prices and years. A candidate (digit groups with separators) is replaced only when it has one
of these shapes:
- international: starts with ``+``, 8-15 digits;
- a bracketed area code: ``(555) 123-4567``, ``(03) 1234 5678``;
- a national number with a trunk ``0``: ``040 123 4567``, ``03-1234-5678``, ``090-1234-5678``,
  ``0912 345 678`` (8-12 digits, at least two groups, not a date such as ``07.11.2023``);
- North-American ``555-123-4567`` / ``555.123.4567``; Indian mobile ``98765 43210``.
Plain integers (no separators), dates, times and dotted version numbers never match.
"""

from __future__ import annotations

import ipaddress
import logging

import regex
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

logger = logging.getLogger(__name__)

EMAIL, IP_ADDRESS, PHONE = "<EMAIL>", "<IP_ADDRESS>", "<PHONE>"

_EMAIL = regex.compile(  # datatrove's PIIFormatter pattern
    r"\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:(?:[A-Za-z0-9](?:["
    r"A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?|\[(?:(?:25[0-5]|2[0-4][0-9]|["
    r"01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?|[A-Za-z0-9-]*[A-Za-z0-9]:)])"
)
# four dotted octets, not part of a longer dotted run (1.2.3.4.5) and not a "v1.2.3.4" version
_IPV4 = regex.compile(r"(?<![\w.])(?<!\bv)(?<!\bversion\s)(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)", regex.IGNORECASE)
# hex groups with at least two colons and one digit; ipaddress decides (12:30:45 and a bare :: are not)
_IPV6 = regex.compile(
    r"(?<![\w:])(?=[:0-9A-Fa-f]*[0-9A-Fa-f])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:)?(?:%\w+)?(?![\w:])"
)
_PHONE_CANDIDATE = regex.compile(
    r"(?<![\w+.,/:-])"
    r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,5}(?:[ .-]\d{1,5}){0,5}"
    r"(?![\w]|[.,/:-]\d)"
)
_DATE = regex.compile(r"\d{1,4}([./-])\d{1,2}\1\d{1,4}")
_NANP = regex.compile(r"\d{3}([.-])\d{3}\1\d{4}")
_INDIA_MOBILE = regex.compile(r"[6-9]\d{4}[ -]\d{5}")


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    return True


def is_phone(candidate: str) -> bool:
    """Whether a run of digit groups is shaped like a phone number (see the module docstring)."""
    digits = sum(ch.isdigit() for ch in candidate)
    if candidate.startswith("+"):
        return 8 <= digits <= 15
    if candidate.startswith("("):
        return 7 <= digits <= 12
    if _DATE.fullmatch(candidate):
        return False
    groups = regex.split(r"[ .-]", candidate)
    if candidate.startswith("0"):
        return 8 <= digits <= 12 and len(groups) >= 2 and all(len(g) >= 2 for g in groups[1:])
    return bool(_NANP.fullmatch(candidate) or _INDIA_MOBILE.fullmatch(candidate))


class PiiAnonymizer(PipelineStep):
    """Replaces emails, IPv4/IPv6 addresses and phone numbers with placeholders, counting each kind.

    Stats: ``pii_email``, ``pii_ip_address``, ``pii_phone`` (replacements) and ``documents_anonymised``.
    """

    name = "🕵️ PII anonymiser"
    type = "✂️ - FORMAT"

    def __init__(self, emails: bool = True, ip_addresses: bool = True, phones: bool = True):
        super().__init__()
        self.emails = emails
        self.ip_addresses = ip_addresses
        self.phones = phones

    def anonymise(self, text: str) -> tuple[str, dict[str, int]]:
        """``text`` with PII replaced, and the number of replacements per kind."""
        counts = {"email": 0, "ip_address": 0, "phone": 0}

        def replace_if(kind: str, placeholder: str, valid):
            def sub(match: regex.Match) -> str:
                if valid is not None and not valid(match.group(0)):
                    return match.group(0)
                counts[kind] += 1
                return placeholder

            return sub

        # emails first (they may hold an IP literal), IPs before phones (an IPv4 is digit groups too)
        if self.emails and "@" in text:
            text = _EMAIL.sub(replace_if("email", EMAIL, None), text)
        if self.ip_addresses:
            text = _IPV4.sub(replace_if("ip_address", IP_ADDRESS, _valid_ip), text)
            if ":" in text:
                text = _IPV6.sub(replace_if("ip_address", IP_ADDRESS, _valid_ip), text)
        if self.phones:
            text = _PHONE_CANDIDATE.sub(replace_if("phone", PHONE, is_phone), text)
        return text, counts

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            self.stat_update("total")
            with self.track_time():
                doc.text, counts = self.anonymise(doc.text)
            for kind, n in counts.items():
                if n:
                    self.stat_update(f"pii_{kind}", value=n)
            if any(counts.values()):
                self.stat_update("documents_anonymised")
            yield doc
