"""Detectors for identifiers with a recognisable shape: e-mail, phone, URL, IP, card numbers,
SSN, CPF, IBAN, handles, street addresses, postal codes and dates of birth.

Each detector is a function `text -> list[Span]`. Shapes that collide with ordinary numbers
(a bare 10-digit number, a 5-digit ZIP, 11 digits that may be a CPF) are only taken with a
context word nearby ("tel", "whatsapp", "CPF", "zip code", a street address); checksummed
numbers must pass their check (see `checksums.py`). Cheap substring tests ("@" in text, any
digit in text) skip whole detectors for the many messages that cannot contain a match.
"""

from __future__ import annotations

import ipaddress
import re

from .checksums import cpf_valid, digits_of, iban_valid, luhn_valid, ssn_valid
from .folding import trie_pattern
from .lexicon import lexicon
from .scan import Scan, as_scan
from .spans import (
    ADDRESS,
    CPF,
    CREDIT_CARD,
    DATE_OF_BIRTH,
    EMAIL,
    HANDLE,
    IBAN,
    IP,
    PHONE,
    POSTAL_CODE,
    SSN,
    URL,
    Span,
)


def _context(
    pattern: re.Pattern[str], text: str, start: int, end: int, before: int, after: int = 0
) -> bool:
    """True if `pattern` occurs within `before` characters before or `after` characters after
    (never looking past a message boundary of a batch, see `detect.BOUNDARY`)."""
    low = window_start(text, start, before)
    if pattern.search(text, low, start):
        return True
    if not after:
        return False
    high = min(len(text), end + after)
    boundary = text.find("\x00", end, high)
    return bool(pattern.search(text, end, high if boundary < 0 else boundary))


def window_start(text: str, start: int, before: int) -> int:
    """`start - before`, moved forward to stay inside the message that contains `start`."""
    low = max(0, start - before)
    boundary = text.rfind("\x00", low, start)
    return low if boundary < 0 else boundary + 1


# --------------------------------------------------------------------------------------------
# E-mail and handles
# --------------------------------------------------------------------------------------------

# From the "@" (a literal the regex engine finds fast) to the end of the domain; the local part
# is then walked back character by character.
_EMAIL_DOMAIN = re.compile(
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_LOCAL_PUNCTUATION = "._%+-"
# Spelled-out addresses: "ana [at] gmail [dot] com", "joao arroba gmail ponto com".
_EMAIL_SPELLED = re.compile(
    r"(?<![\w.])[\w.+-]+\s*(?:\[at\]|\(at\)|\{at\}|\s(?:at|arroba)\s)\s*[A-Za-z0-9-]+"
    r"(?:\s*(?:\[dot\]|\(dot\)|\{dot\}|\.|\s(?:dot|ponto)\s)\s*[A-Za-z]{2,10}){1,3}\b",
    re.IGNORECASE,
)
_WEBMAILS = (
    "gmail",
    "hotmail",
    "yahoo",
    "outlook",
    "icloud",
    "live",
    "uol",
    "bol",
    "terra",
    "protonmail",
    "proton",
    "globo",
    "msn",
    "aol",
)
# The "at" must be bracketed, or spelled out right before a webmail provider, so that prose
# like "meet at home dot" is left alone. Found with str.find (fast) and checked with a regex.
_SPELLED_AT_MARKERS = ("[at]", "(at)", "{at}", " at ", " arroba ")
_WEBMAIL_AFTER = re.compile(rf"\s*(?:{'|'.join(_WEBMAILS)})\b")


def _spelled_at_positions(lower: str) -> list[int]:
    positions = []
    for marker in _SPELLED_AT_MARKERS:
        position = lower.find(marker)
        while position >= 0:
            end = position + len(marker)
            if (
                marker.startswith("[")
                or marker.startswith("(")
                or marker.startswith("{")
                or _WEBMAIL_AFTER.match(lower, end)
            ):
                positions.append(position)
            position = lower.find(marker, end)
    return positions


def detect_emails(value: str | Scan) -> list[Span]:
    """E-mail addresses, including spelled-out ones ("ana [at] gmail [dot] com")."""
    scanned = as_scan(value)
    text, lower = scanned.text, scanned.lower
    spans = []
    if "@" in text:
        for match in _EMAIL_DOMAIN.finditer(text):
            at = match.start()
            start = at
            while (
                start > 0
                and at - start < 64
                and (text[start - 1].isalnum() or text[start - 1] in _LOCAL_PUNCTUATION)
            ):
                start -= 1
            while start < at and text[start] == ".":
                start += 1
            if start < at:
                spans.append(Span(start, match.end(), EMAIL, "email"))
    for marker in _spelled_at_positions(lower):
        window = _EMAIL_SPELLED.search(
            text, window_start(text, marker, 64), min(len(text), marker + 50)
        )
        if window is not None and window.start() <= marker < window.end():
            spans.append(Span(window.start(), window.end(), EMAIL, "email_spelled"))
    return spans


_HANDLE = re.compile(
    r"@(?=[\w.]*[A-Za-z])[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,28}[A-Za-z0-9_])?(?![\w@]|\.\w)"
)
# Mentions that address a group or a bot, not a person.
_HANDLE_IGNORE = frozenset(
    {"everyone", "here", "channel", "all", "todos", "team", "admin", "support"}
)


def detect_handles(value: str | Scan) -> list[Span]:
    """Social-media handles ("@ju.martins"), not the "@" of an e-mail address."""
    text = as_scan(value).text
    if "@" not in text:
        return []
    lex = lexicon()
    spans = []
    for match in _HANDLE.finditer(text):
        start = match.start()
        if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_@.-/"):
            continue
        name = match.group()[1:].lower()
        if name in _HANDLE_IGNORE or name in lex.not_names:
            continue
        spans.append(Span(start, match.end(), HANDLE, "handle"))
    return spans


# --------------------------------------------------------------------------------------------
# URLs and domains
# --------------------------------------------------------------------------------------------

# Top-level domains accepted for a bare "name.tld". Deliberately short: ccTLDs that are also
# common file extensions (.py, .sh, .md, .rs, .pl, .so, .cc, .pt) are left out, so "main.py"
# or "model.pt" is not a URL; such domains are still found with "www." or a scheme.
_BARE_TLDS = (
    "com|org|net|edu|gov|mil|int|info|biz|io|co|me|app|dev|ai|xyz|online|site|tech|store|blog|"
    "news|shop|page|link|live|tv|fm|ly|gg|br|uk|us|ca|fr|nl|eu|au|ar|mx|cl|ch|se|ie|nz|jp|kr|"
    "ru|za"
)
# ".com", ".com.br": found from the literal dot (fast), the domain labels are walked back.
_TLD = re.compile(rf"\.(?:{_BARE_TLDS})(?![\w-])(?:\.(?:br|uk|au|ar|mx|jp|nz|za)(?![\w-]))?")
_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_URL_TAIL = re.compile(r"(?::\d{2,5})?(?:/[^\s<>\"'`\x00]*)?")
_URL_REST = re.compile(r"[^\s<>\"'`\x00]+")
# On the lower-cased text, so the pattern opens with a literal the engine finds fast.
_WWW_URL = re.compile(r"www\d{0,3}\.[^\s<>\"'`\x00]+")
_URL_TRAILING = ".,;:!?'\"»”’"


def _trim_url(text: str, start: int, end: int) -> int:
    # Sentence punctuation after a URL is not part of it; a closing bracket is kept only if
    # the URL opened one (Wikipedia-style "…_(film)").
    while end > start:
        last = text[end - 1]
        if last in _URL_TRAILING:
            end -= 1
        elif last in ")]}":
            opener = {")": "(", "]": "[", "}": "{"}[last]
            if text.count(opener, start, end) < text.count(last, start, end):
                end -= 1
            else:
                break
        else:
            break
    return end


def detect_urls(value: str | Scan) -> list[Span]:
    """URLs with a scheme or "www.", and bare domains with a common top-level domain."""
    scanned = as_scan(value)
    text, lower = scanned.text, scanned.lower
    if "." not in text:
        return []
    spans = []
    position = text.find("://")
    while position >= 0:
        start = position
        while start > 0 and text[start - 1].isascii() and text[start - 1].isalpha():
            start -= 1
        if lower[start:position] in ("http", "https", "ftp"):
            match = _URL_REST.match(text, position + 3)
            if match is not None:
                spans.append(Span(start, _trim_url(text, start, match.end()), URL, "url"))
        position = text.find("://", position + 3)
    for match in _WWW_URL.finditer(lower):
        if match.start() == 0 or not lower[match.start() - 1].isalnum():
            spans.append(
                Span(match.start(), _trim_url(text, match.start(), match.end()), URL, "url")
            )
    for match in _TLD.finditer(text):
        dot = start = match.start()
        while (
            start > 0
            and text[start - 1].isascii()
            and (text[start - 1].isalnum() or text[start - 1] in ".-")
        ):
            start -= 1
        while start < dot and text[start] in ".-":
            start += 1
        if start == dot or (
            start > 0 and (text[start - 1] in "@/\\_" or text[start - 1].isalnum())
        ):
            continue  # an e-mail's domain, a path, or glued to a non-ASCII word
        if not _DOMAIN.fullmatch(text, start, dot):
            continue
        if not any(ch.isalpha() for ch in text[start:dot]):
            continue  # "1.5.co" is not a domain
        end = _trim_url(text, start, _URL_TAIL.match(text, match.end()).end())
        spans.append(Span(start, end, URL, "url"))
    return spans


# --------------------------------------------------------------------------------------------
# IP addresses
# --------------------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])"
)


def _ipv6_candidates(text: str) -> list[re.Match[str]]:
    # From each "::" or run of colons (found with str.find), widen to the hex/colon/dot run
    # around it and let the candidate pattern decide; cheaper than scanning the whole text.
    matches = []
    position = text.find(":")
    covered = -1
    while position >= 0:
        if position >= covered:
            start = position
            while start > 0 and (text[start - 1] in _IPV6_CHARS):
                start -= 1
            end = position
            while end < len(text) and text[end] in _IPV6_CHARS:
                end += 1
            match = _IPV6_CANDIDATE.search(text, start, end)
            if match is not None:
                matches.append(match)
            covered = end
        position = text.find(":", position + 1)
    return matches


def detect_ips(value: str | Scan) -> list[Span]:
    """IPv4 (valid octets) and IPv6 (validated by the standard library's parser)."""
    scanned = as_scan(value)
    text = scanned.text
    spans = []
    for start, end, _ in scanned.numbers_with(4, 12):
        if text.count(".", start, end) >= 3:
            for match in _IPV4.finditer(text, start, min(len(text), end + 2)):
                spans.append(Span(match.start(), match.end(), IP, "ipv4"))
    if "::" in text or text.count(":") >= 7:
        for match in _ipv6_candidates(text):
            candidate = match.group()
            # Clock times ("14:30:00") have neither "::" nor eight groups; the stdlib parser
            # then decides.
            if "::" not in candidate and candidate.count(":") != 7:
                continue
            if len(candidate) < 3 or not any(ch.isalnum() for ch in candidate):
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            spans.append(Span(match.start(), match.end(), IP, "ipv6"))
    return spans


# --------------------------------------------------------------------------------------------
# Payment cards, SSN, CPF, IBAN
# --------------------------------------------------------------------------------------------

_CARD = re.compile(
    r"(?<![\d.,\-/])"
    r"(?:\d{4}[ \-]?\d{6}[ \-]?\d{5}"  # Amex 4-6-5
    r"|\d{4}(?:[ \-]?\d{4}){2}[ \-]?\d{1,4}(?:[ \-]?\d{1,3})?)"  # 13-19 digits in fours
    r"(?![\d\-/]|[.,]\d)"
)


def _next_digit_end(text: str, position: int) -> int:
    """The index just after the first digit at or after `position`."""
    while not text[position].isdigit():
        position += 1
    return position + 1


def detect_credit_cards(value: str | Scan) -> list[Span]:
    """Payment card numbers (13-19 digits, issuer prefix, Luhn check)."""
    scanned = as_scan(value)
    text = scanned.text
    spans = []
    for run_start, run_end, _ in scanned.numbers_with(13):
        for match in _CARD.finditer(text, run_start, min(len(text), run_end + 2)):
            start, end = match.span()
            card = match.group()
            if len({ch for ch in card if not ch.isdigit()}) > 1:
                continue  # "1234-5678 9012" mixes separators: not how a card is written
            number = digits_of(card)
            if len(number) > 16 and not luhn_valid(number):
                # A card followed by its security code ("4111 1111 1111 1111 123"): retry
                # with the first sixteen digits.
                cut = start
                for _ in range(16):
                    cut = _next_digit_end(text, cut)
                end, number = cut, number[:16]
            # Issuer prefixes start with 2-6 (MasterCard 2-series, Amex 3, Visa 4,
            # MasterCard/Elo 5, Discover/Elo/Hipercard 6); lengths 13-19 (ISO/IEC 7812).
            if number[0] in "23456" and 13 <= len(number) <= 19 and luhn_valid(number):
                spans.append(Span(start, end, CREDIT_CARD, "credit_card"))
    return spans


_SSN_DASHED = re.compile(r"(?<![\d\-])\d{3}-\d{2}-\d{4}(?![\d\-])")
_SSN_LOOSE = re.compile(r"(?<![\d\-.])\d{3}[ .]?\d{2}[ .]?\d{4}(?![\d\-]|[.,]\d)")
_SSN_CONTEXT = re.compile(r"\b(?:ssn|ss#|social\s+security|soc\.?\s*sec)", re.IGNORECASE)


def detect_ssns(value: str | Scan) -> list[Span]:
    """US Social Security numbers: dashed anywhere, undashed only after "SSN"/"social security"."""
    scanned = as_scan(value)
    text = scanned.text
    spans = []
    for run_start, run_end, _ in scanned.numbers_with(9):
        window_end = min(len(text), run_end + 2)
        for match in _SSN_DASHED.finditer(text, run_start, window_end):
            if ssn_valid(digits_of(match.group())):
                spans.append(Span(match.start(), match.end(), SSN, "ssn"))
        if not _SSN_CONTEXT.search(text, window_start(text, run_start, 40), run_start):
            continue
        for match in _SSN_LOOSE.finditer(text, run_start, window_end):
            if "-" not in match.group() and ssn_valid(digits_of(match.group())):
                spans.append(Span(match.start(), match.end(), SSN, "ssn_context"))
    return spans


_CPF_FORMATTED = re.compile(
    r"(?<![\d.\-])\d{3}\.\d{3}\.\d{3}-\d{2}(?![\d\-]|\.\d)|(?<![\d.\-])\d{9}-\d{2}(?![\d\-])"
)
_CPF_LOOSE = re.compile(r"(?<![\d.\-/])\d{3}[ .]?\d{3}[ .]?\d{3}[ .\-/]?\d{2}(?![\d\-]|[.,]\d)")
_CPF_CONTEXT = re.compile(r"\bc\.?p\.?f\b", re.IGNORECASE)


def detect_cpfs(value: str | Scan) -> list[Span]:
    """CPFs with valid check digits: formatted anywhere, bare 11 digits only near "CPF"."""
    scanned = as_scan(value)
    text = scanned.text
    spans = []
    for run_start, run_end, _ in scanned.numbers_with(11):
        window_end = min(len(text), run_end + 2)
        for match in _CPF_FORMATTED.finditer(text, run_start, window_end):
            if cpf_valid(digits_of(match.group())):
                spans.append(Span(match.start(), match.end(), CPF, "cpf"))
        if not _context(_CPF_CONTEXT, text, run_start, run_end, before=40, after=15):
            continue
        for match in _CPF_LOOSE.finditer(text, run_start, window_end):
            if cpf_valid(digits_of(match.group())):
                spans.append(Span(match.start(), match.end(), CPF, "cpf_context"))
    return spans


_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")


def detect_ibans(value: str | Scan) -> list[Span]:
    """IBANs with a valid ISO 7064 mod-97 check (and the registered length, where known)."""
    scanned = as_scan(value)
    text = scanned.text
    # Every IBAN carries at least ten digits in one run (bank + account numbers).
    if not scanned.numbers_with(10):
        return []
    spans = []
    matches = []
    searched_to = 0
    for run_start, run_end, _ in scanned.numbers_with(10):
        # The country code, check digits and any letters of the bank code come just before.
        low = max(searched_to, window_start(text, run_start, 16))
        matches += _IBAN.finditer(text, low, min(len(text), run_end + 6))
        searched_to = run_end
    for match in matches:
        value = match.group()
        # The greedy match may swallow a following word ("… 1234 5678 e depois"); drop
        # trailing groups until the checksum holds.
        while value:
            if iban_valid(value):
                spans.append(Span(match.start(), match.start() + len(value), IBAN, "iban"))
                break
            cut = value.rfind(" ")
            if cut <= 4:
                break
            value = value[:cut]
    return spans


# --------------------------------------------------------------------------------------------
# Phone numbers
# --------------------------------------------------------------------------------------------

# Valid Brazilian area codes (DDD), from Anatel's national numbering plan.
_BR_DDD = frozenset(
    [
        "11",
        "12",
        "13",
        "14",
        "15",
        "16",
        "17",
        "18",
        "19",
        "21",
        "22",
        "24",
        "27",
        "28",
        "31",
        "32",
        "33",
        "34",
        "35",
        "37",
        "38",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "47",
        "48",
        "49",
        "51",
        "53",
        "54",
        "55",
        "61",
        "62",
        "63",
        "64",
        "65",
        "66",
        "67",
        "68",
        "69",
        "71",
        "73",
        "74",
        "75",
        "77",
        "79",
        "81",
        "82",
        "83",
        "84",
        "85",
        "86",
        "87",
        "88",
        "89",
        "91",
        "92",
        "93",
        "94",
        "95",
        "96",
        "97",
        "98",
        "99",
    ]
)

_PHONE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # +55 11 98765 4321, +1 (415) 555-0132, +44 20 7946 0958, +4915112345678
    (
        "phone_intl",
        re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .\-]?(?:\(\d{1,4}\)|\d{1,5})){1,6}(?![\d\-]|[.,]\d)"),
    ),
    # (11) 98765-4321, 11 98765-4321, (011) 3456-7890, 11987654321
    (
        "phone_br",
        re.compile(
            r"(?<![\w+\-.,/])(?:\(0?\d{2}\)|0?\d{2})[ .\-]?"
            r"(?:9[ .]?)?\d{4}[ .\-]?\d{4}(?![\d\-]|[.,]\d)"
        ),
    ),
    # 98765-4321, 9 8765-4321 (mobile without area code)
    ("phone_br_local", re.compile(r"(?<![\w+\-.,/])9[ .]?\d{4}[ \-]\d{4}(?![\d\-]|[.,]\d)")),
    # (415) 555-0132, 415-555-0132, 415.555.0132, 1-800-555-0199
    (
        "phone_us",
        re.compile(
            r"(?<![\w+\-.,/])(?:1[ .\-]?)?(?:\([2-9]\d{2}\)|[2-9]\d{2})[ .\-]?"
            r"[2-9]\d{2}[ .\-]\d{4}(?![\d\-]|[.,]\d)"
        ),
    ),
    # 020 7946 0958, 07700 900123 (UK trunk prefix 0)
    ("phone_uk", re.compile(r"(?<![\w+\-.,/])0\d{2,4}[ \-]\d{3,4}[ \-]?\d{3,4}(?![\d\-]|[.,]\d)")),
)
# The character every match of these patterns starts with.
_PHONE_FIRST_CHARACTER = {"phone_intl": "+", "phone_br_local": "9", "phone_uk": "0"}
# Shapes too close to ordinary numbers to take without a phone word nearby.
_PHONE_CONTEXT_ONLY = re.compile(r"(?<![\w+\-.,/$])\(?\d[\d .\-()]{5,16}\d(?![\d\-]|[.,]\d)")
_PHONE_CONTEXT = re.compile(
    r"\b(?:tel|tel\.|telefone|telefones|fone|fones|celular|cel|whats|whatsapp|wpp|zap|zapzap|"
    r"phone|cell|mobile|ligar|liga|ligue|me\s+liga|call|text|sms|contato|contact|n[úu]mero|number|"
    r"ramal|fax)\b",
    re.IGNORECASE,
)
# Numbers introduced by these words are references, not phone numbers ("número do pedido").
_NOT_PHONE_CONTEXT = re.compile(
    r"\b(?:pedido|order|protocolo|protocol|ticket|chamado|conta|account|rastreio|tracking|id|"
    r"rg|cpf|cnpj|nota|invoice|cart[ãa]o|card|matr[íi]cula|registro|boleto|c[óo]digo|code|"
    r"senha|password|pin|isbn|processo|lote|serial|cep|zip|postal|postcode)\b",
    re.IGNORECASE,
)
# Dates and CEPs have the digit count of a phone number but not its grouping.
_DOTTED_DATE = re.compile(
    r"[0-3]?\d[.\-][01]?\d[.\-](?:\d{4}|\d{2})|\d{5}-\d{3}|\d{2}\.\d{3}-\d{3}"
)


def _phone_shape_ok(detector: str, value: str, number: str) -> bool:
    if detector == "phone_intl":
        return 8 <= len(number) <= 15
    if detector == "phone_br":
        local = number[1:] if number.startswith("0") else number
        if local[:2] not in _BR_DDD or len(local) not in (10, 11):
            return False
        if len(local) == 11 and local[2] != "9":
            return False  # 11 digits with a DDD is always a mobile starting with 9
        # Ten or eleven bare digits with no separator at all are as likely an order number.
        return any(not ch.isdigit() for ch in value.strip())
    if detector == "phone_uk":
        return 10 <= len(number) <= 11
    return True


def detect_phones(value: str | Scan) -> list[Span]:
    """Phone numbers in Brazilian, US, UK and international (+CC) formats."""
    scanned = as_scan(value)
    text = scanned.text
    spans = []
    for run_start, run_end, digits in scanned.numbers_with(7, 18):
        window_end = min(len(text), run_end + 2)
        window = text[run_start:window_end]
        found = False
        for detector, pattern in _PHONE_PATTERNS:
            # Skip a pattern whose first character is absent ("+", "9", "0"): it cannot match.
            first = _PHONE_FIRST_CHARACTER.get(detector)
            if first is not None and first not in window:
                continue
            for match in pattern.finditer(text, run_start, window_end):
                phone = match.group()
                if _phone_shape_ok(detector, phone, digits_of(phone)):
                    spans.append(Span(match.start(), match.end(), PHONE, detector))
                    found = True
        if found or digits > 13:
            continue
        # Shapes too close to ordinary numbers: only after a phone word ("tel", "zap").
        for match in _PHONE_CONTEXT_ONLY.finditer(text, run_start, window_end):
            start, end = match.span()
            if text[start] == "(" and ")" not in match.group():
                start += 1
            if not 7 <= len(digits_of(match.group())) <= 13 or _DOTTED_DATE.fullmatch(
                text, start, end
            ):
                continue
            if _context(_PHONE_CONTEXT, text, start, end, before=30) and not _context(
                _NOT_PHONE_CONTEXT, text, start, end, before=30
            ):
                spans.append(Span(start, end, PHONE, "phone_context"))
    return spans


# --------------------------------------------------------------------------------------------
# Street addresses and postal codes
# --------------------------------------------------------------------------------------------

_EN_STREET_TYPES = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way|"
    r"Terrace|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq|Trail|Crescent|Close|Alley|Row"
)
_EN_ADDRESS = re.compile(
    rf"(?<![\w.,/\-$])\d{{1,5}}[A-Za-z]?(?:-\d{{1,4}})?\s+"
    rf"(?:(?:[NSEW]|North|South|East|West)\.?\s+)?"
    rf"((?:(?:\d{{1,3}}(?:st|nd|rd|th)|[A-Za-z][a-zA-Z'\-]*)\s+){{1,4}}?)"
    rf"(?:{_EN_STREET_TYPES})\b\.?"
    rf"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|#)\.?\s*#?[A-Za-z0-9]{{1,5}}\b)?",
    re.IGNORECASE,
)
# Before the full English pattern is tried after a number: is a street-type word nearby?
_EN_STREET_HINT = re.compile(
    " (?:" + trie_pattern([t.lower() for t in _EN_STREET_TYPES.split("|")]) + r")\b"
)
_PT_STREET_TYPES = (
    r"Rua|R\.|Avenida|Av\.?|Alameda|Al\.|Travessa|Tv\.|Trav\.|Pra[çc]a|P[çc]a\.|Estrada|Estr\.|"
    r"Rodovia|Rod\.|Largo|Viela|Ladeira|Servid[ãa]o|Beco"
)
_PT_ADDRESS = re.compile(
    rf"\b(?:{_PT_STREET_TYPES})\s+((?:[\w'.\-]+\s+){{0,6}}?[\w'.\-]+?),?\s*"
    rf"(?:n[º°o]?\.?\s*|n[úu]mero\s+)?\d{{1,5}}[A-Za-z]?(?![\d.,]*\d)"
    rf"(?:\s*[,\-–]?\s*(?:apto?\.?|apartamento|casa|bloco|bl\.|sala|cj\.?|conjunto|lote)\s*[A-Za-z0-9]{{1,5}}\b)*",
    re.IGNORECASE,
)
# A cheap test (literals, on the lower-cased text) before the Portuguese street pattern is
# tried near a number.
_PT_STREET_HINTS = (
    "rua", "r.", "av", "alameda", "al.", "travessa", "tv.", "trav", "praça", "praca", "pça", "pca",
    "estrada", "estr.", "rodovia", "rod.", "largo", "viela", "ladeira", "servid", "beco",
)  # fmt: skip
# Word-initial only: "av" inside "have" must not send every English sentence to the full
# Portuguese address pattern.
_PT_STREET_HINT = re.compile(r"(?<![^\W\d_])(?:" + trie_pattern(_PT_STREET_HINTS) + ")")


def _word_initial_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    # Finds what `_PT_STREET_HINT` finds, written so that every branch opens with a literal (the
    # word's first letter) and the word-start check is a lookbehind after it: the regex engine
    # then skips ahead to possible first letters instead of trying the lookbehind everywhere.
    by_first: dict[str, list[str]] = {}
    for word in words:
        by_first.setdefault(word[0], []).append(word[1:])
    return re.compile(
        "|".join(
            f"{re.escape(first)}(?<![^\\W\\d_]{re.escape(first)})(?:{trie_pattern(rests)})"
            for first, rests in sorted(by_first.items())
        )
    )


_PT_STREET_HINT_FAST = _word_initial_pattern(_PT_STREET_HINTS)
_ADDRESS_STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "to",
        "my",
        "your",
        "our",
        "his",
        "her",
        "their",
        "this",
        "that",
        "these",
        "those",
        "down",
        "up",
        "on",
        "in",
        "at",
        "for",
        "with",
        "and",
        "or",
        "from",
        "by",
        "about",
        "over",
        "under",
        "into",
        "onto",
        "than",
        "then",
        "miles",
        "mile",
        "km",
        "blocks",
        "block",
        "minutes",
        "minute",
        "hours",
        "hour",
        "times",
        "people",
        "years",
        "year",
        "days",
        "day",
        "was",
        "were",
        "is",
        "are",
        "am",
        "be",
        "been",
        "i",
        "we",
        "you",
        "he",
        "she",
        "they",
        "it",
        "me",
        "us",
        "them",
        "na",
        "no",
        "nas",
        "nos",
        "em",
        "com",
        "por",
        "para",
        "pra",
        "pro",
        "um",
        "uma",
        "uns",
        "umas",
        "que",
        "é",
        "e",
        "foi",
        "era",
        "eu",
        "ele",
        "ela",
        "meu",
        "minha",
        "sua",
        "seu",
        "depois",
        "antes",
        "hoje",
        "ontem",
        "mais",
        "muito",
        "muita",
        "tinha",
        "tem",
        "ter",
        "estava",
        "está",
        "vou",
        "vai",
        "fui",
        "sem",
    ]
)
_PT_LOWER_PARTICLES = frozenset({"da", "de", "do", "das", "dos", "e"})


def _street_words_ok(words: list[str], type_word_capitalised: bool) -> bool:
    if not words:
        return False
    lex = lexicon()
    for word in words:
        key = word.lower().strip(".,'")
        if key in _ADDRESS_STOPWORDS and key not in _PT_LOWER_PARTICLES:
            return False
        if word[0].isdigit() or word[0].isupper() or key in _PT_LOWER_PARTICLES:
            continue
        # A lower-case word inside a street name: accepted only when the whole address is
        # typed in lower case ("rua augusta 1500") and the word is not a common word.
        if type_word_capitalised or key in lex.common_words:
            return False
    return True


def detect_addresses(value: str | Scan) -> list[Span]:
    """Street addresses: "742 Evergreen Terrace" (number first) and "Rua Augusta, 1500"
    (number last), each with an optional apartment / suite."""
    scanned = as_scan(value)
    text, lower = scanned.text, scanned.lower
    length = len(text)
    spans = []
    en_hint = _EN_STREET_HINT.search
    pt_hint = _PT_STREET_HINT_FAST.search
    for run_start, run_end, digits in scanned.numbers:
        if not 1 <= digits <= 6:  # scanned.numbers_with(1, 6), without the copy
            continue
        if (
            digits <= 5
            and run_end + 1 < length
            and (text[run_end].isalpha() or (text[run_end] == " " and text[run_end + 1].isalpha()))
            and en_hint(lower, run_end, run_end + 60)
        ):
            start = run_start
            while start < run_end and not text[start].isdigit():
                start += 1
            match = _EN_ADDRESS.match(text, start)
            if match is not None:
                words = match.group(1).split()
                type_word = text[match.end(1) : match.end()].strip()
                # "Dr"/"St" double as titles: with a capitalised type, lower-case words
                # before it ("3 doctors Dr Smith") are not a street name.
                if _street_words_ok(words, type_word[:1].isupper()):
                    spans.append(Span(match.start(), match.end(), ADDRESS, "address_en"))
        # The Portuguese number follows the street name: a letter, then maybe "," or "nº".
        before = text[run_start - 9 if run_start > 9 else 0 : run_start].rstrip(" ,º°.nN")
        if not before or not before[-1].isalpha():
            continue
        low = run_start - 90 if run_start > 90 else 0  # window_start(text, run_start, 90)
        boundary = text.rfind("\x00", low, run_start)
        if boundary >= 0:
            low = boundary + 1
        if pt_hint(lower, low, run_start):
            for match in _PT_ADDRESS.finditer(text, low, min(len(text), run_end + 40)):
                if match.end() < run_start:
                    continue
                words = match.group(1).split()
                if len(words) <= 6 and _street_words_ok(words, match.group()[:1].isupper()):
                    spans.append(Span(match.start(), match.end(), ADDRESS, "address_pt"))
    return spans


_CEP = re.compile(
    r"(?<![\d.\-/,])\d{5}-\d{3}(?![\d\-]|[.,]\d)|(?<![\d.\-/,])\d{2}\.\d{3}-\d{3}(?![\d\-])"
)
_CEP_BARE = re.compile(r"(?<![\d.\-/,])\d{8}(?!\d)")
_ZIP = re.compile(r"(?<![\d.\-/,$])\d{5}(?:-\d{4})?(?![\d\-%]|[.,]\d)")
_UK_POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s?\d[ABD-HJLNP-UW-Z]{2}\b")
_UK_HINTS = (
    "postcode",
    "post code",
    "london",
    "uk",
    "england",
    "scotland",
    "wales",
    "manchester",
    "address",
)
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|"
    "NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
_ZIP_STATE_BEFORE = re.compile(rf"\b(?:{_US_STATES})\.?,?\s*$")
_POSTAL_WORD = re.compile(
    r"\b(?:cep|c\.e\.p|zip|zipcode|zip\s+code|postal\s+code|postcode|post\s+code|c[óo]digo\s+postal)\b",
    re.IGNORECASE,
)
_ADDRESS_WORD = re.compile(
    r"\b(?:endere[çc]o|moro|mora|moramos|morar|bairro|entrega|entregar|resid[êe]ncia|"
    r"address|live|lives|living|moved|ship|shipping|deliver|delivery|street|london|england|uk|"
    r"manchester|scotland|wales)\b",
    re.IGNORECASE,
)


def _uk_postcode_candidates(scanned: Scan) -> list[re.Match[str]]:
    # A UK postcode's first digit follows one or two capitals ("SW1A 2AA", "M1 1AE").
    text = scanned.text
    matches = []
    covered = 0
    for run_start, run_end, digits in scanned.numbers:
        if digits <= 4 and run_start > 0 and text[run_start - 1].isupper() and run_start >= covered:
            match = _UK_POSTCODE.search(text, max(0, run_start - 3), min(len(text), run_end + 8))
            if match is not None:
                matches.append(match)
                covered = match.end()
    return matches


def detect_postal_codes(value: str | Scan, addresses: list[Span] | None = None) -> list[Span]:
    """Postal codes (Brazilian CEP, US ZIP, UK postcode), only when the text around them is
    about an address.

    `addresses` (from `detect_addresses`) count as context: a code within 80 characters after
    a street address is taken.
    """
    scanned = as_scan(value)
    text, lower = scanned.text, scanned.lower
    if addresses is None:
        addresses = detect_addresses(scanned)
    spans: list[Span] = []

    def near_address(start: int, end: int) -> bool:
        for address in addresses:
            if -15 <= start - address.end <= 80 or -15 <= address.start - end <= 40:
                low, high = min(start, address.start), max(end, address.end)
                if text.find("\x00", low, high) < 0:  # same message of a batch
                    return True
        return False

    for run_start, run_end, digits in scanned.numbers:
        window_end = min(len(text), run_end + 2)
        if digits == 8:
            for match in _CEP.finditer(text, run_start, window_end):
                start, end = match.span()
                if (
                    near_address(start, end)
                    or _context(_POSTAL_WORD, text, start, end, before=25, after=10)
                    or _context(_ADDRESS_WORD, text, start, end, before=60, after=30)
                ):
                    spans.append(Span(start, end, POSTAL_CODE, "cep"))
            for match in _CEP_BARE.finditer(text, run_start, window_end):
                if _context(_POSTAL_WORD, text, match.start(), match.end(), before=20):
                    spans.append(Span(match.start(), match.end(), POSTAL_CODE, "cep"))
        elif digits in (5, 9):
            for match in _ZIP.finditer(text, run_start, window_end):
                start, end = match.span()
                if (
                    _ZIP_STATE_BEFORE.search(text, window_start(text, start, 6), start)
                    or _context(_POSTAL_WORD, text, start, end, before=20)
                    or near_address(start, end)
                ):
                    spans.append(Span(start, end, POSTAL_CODE, "zip"))
    if addresses or any(hint in lower for hint in _UK_HINTS):
        for match in _uk_postcode_candidates(scanned):
            start, end = match.span()
            if (
                near_address(start, end)
                or _context(_POSTAL_WORD, text, start, end, before=25)
                or _context(_ADDRESS_WORD, text, start, end, before=60, after=20)
            ):
                spans.append(Span(start, end, POSTAL_CODE, "uk_postcode"))
    return spans


# --------------------------------------------------------------------------------------------
# Dates of birth
# --------------------------------------------------------------------------------------------

# Birth cues, matched on the lower-cased text as one trie-shaped alternation of literals.
_DOB_CUE = re.compile(
    trie_pattern(
        (
            "born", "birthday", "birth day", "bday", "b-day", "dob", "d.o.b", "date of birth",
            "birth date", "birthdate", "nasci", "nascido", "nascida", "nascimento",
            "aniversário", "aniversario", "niver", "faço anos", "faco anos", "completo anos",
            "dt nasc", "dt. nasc", "dt.nasc", "data nasc", "nasc.",
        )
    )
)  # fmt: skip
_EN_MONTHS = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_PT_MONTHS = (
    r"janeiro|fevereiro|mar[çc]o|abril|maio|junho|julho|agosto|setembro|outubro|novembro|dezembro|"
    r"jan|fev|mar|abr|mai|jun|jul|ago|set|out|nov|dez"
)
_DATE = re.compile(
    rf"""
    (?<![\d/.\-])(?:
        \d{{4}}-\d{{1,2}}-\d{{1,2}}
      | [0-3]?\d[/.\-][0-3]?\d(?:[/.\-](?:\d{{4}}|\d{{2}}))?
      | (?:{_EN_MONTHS})\.?\s+[0-3]?\d(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?
      | [0-3]?\d(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_EN_MONTHS})\.?(?:,?\s+\d{{4}})?
      | (?:dia\s+)?[0-3]?\d[º°]?\s+de\s+(?:{_PT_MONTHS})(?:\s+de\s+\d{{4}})?
      | (?:{_EN_MONTHS})\s+\d{{4}} | (?:{_PT_MONTHS})\s+de\s+\d{{4}}
    )(?![\d/]|[.\-]\d)
    """,
    re.IGNORECASE | re.VERBOSE,
)
# "aniversário de casamento / de namoro / da empresa" is not anyone's birthday.
_NOT_BIRTH_ANNIVERSARY = re.compile(
    r"\w*\s+(?:de|do|da)\s+(?:casamento|namoro|noivado|empresa|morte|falecimento|formatura|cidade)",
    re.IGNORECASE,
)
# A date belongs to the cue only inside the same sentence.
_SENTENCE_BREAK = re.compile(r"[.!?](?:\s|$)|\n")


def detect_dates_of_birth(value: str | Scan) -> list[Span]:
    """Dates (common EN/PT formats) in the same sentence as a birth cue ("born on", "DOB",
    "nasci em", "aniversário"); other dates are not identifiers on their own."""
    scanned = as_scan(value)
    text, lower = scanned.text, scanned.lower
    if not scanned.numbers:
        return []
    spans = []
    for cue in _DOB_CUE.finditer(lower):
        if cue.start() and lower[cue.start() - 1].isalnum():
            continue  # "newborn", "reborn"
        if _NOT_BIRTH_ANNIVERSARY.match(text, cue.end()):
            continue
        # An abbreviated cue ends with its own dot ("data nasc.", "d.o.b."): not a full stop.
        after_cue = cue.end() + 1 if text.startswith(".", cue.end()) else cue.end()
        limit = min(len(text), after_cue + 60)
        stop = _SENTENCE_BREAK.search(text, after_cue, limit)
        window_end = stop.start() if stop else limit
        # "12/03/1990." ends at the sentence's full stop; let the date run to its own end.
        date = _DATE.search(text, after_cue, min(len(text), window_end + 12))
        if date is not None and date.start() < window_end:
            spans.append(Span(date.start(), date.end(), DATE_OF_BIRTH, "date_of_birth"))
            continue
        # "12/03/1990 is my birthday", "15 de maio é meu aniversário": look just before.
        sentence_start = max(0, cue.start() - 40)
        before = text[sentence_start : cue.start()]
        last_break = max(
            before.rfind(". "), before.rfind("\n"), before.rfind("! "), before.rfind("? ")
        )
        search_from = sentence_start + last_break + 1 if last_break >= 0 else sentence_start
        for date in _DATE.finditer(text, search_from, cue.start()):
            spans.append(Span(date.start(), date.end(), DATE_OF_BIRTH, "date_of_birth"))
    return spans
