"""Check-digit validation for the numbers whose format alone is too weak a signal.

The check-digit algorithms come from python-stdnum (Luhn / ISO/IEC 7812-1, the Receita
Federal's CPF mod-11 digits, IBAN per ISO 13616 with the ISO 7064 MOD 97-10 check and each
country's BBAN format), which is maintained against the registries and tested. This module adds
what the anonymizer needs on top: a digits-only guard on the candidate strings the detectors
pass, refusing repeated-digit CPFs, and the SSN range rule (see ssn_valid for why by hand).
"""

from __future__ import annotations

from stdnum import iban, luhn
from stdnum.br import cpf


def digits_of(text: str) -> str:
    """The ASCII digits of `text`, in order (separators dropped)."""
    return "".join(ch for ch in text if "0" <= ch <= "9")


def _ascii_digits(number: str) -> bool:
    return number.isascii() and number.isdigit()


def luhn_valid(number: str) -> bool:
    """True if the digit string passes the Luhn mod-10 check (ISO/IEC 7812-1)."""
    return _ascii_digits(number) and luhn.is_valid(number)


def cpf_valid(number: str) -> bool:
    """True if an 11-digit string has valid CPF check digits (Receita Federal mod-11 rule)."""
    if len(number) != 11 or not _ascii_digits(number):
        return False
    # Repeated digits (000.000.000-00, 111.111.111-11 …) pass the arithmetic, and stdnum accepts
    # them, but they are not issued; they are also what people type as placeholders.
    if number == number[0] * 11:
        return False
    return cpf.is_valid(number)


def iban_valid(candidate: str) -> bool:
    """True if `candidate` (spaces allowed) is an IBAN: a registered country, that country's
    BBAN format and length, and a valid ISO 7064 mod-97 check."""
    compact = candidate.replace(" ", "")
    # check_country=False skips the national check digits some countries add inside the BBAN
    # (Spain's, Belgium's …): the mod-97 check over the whole IBAN already catches a mistyped
    # digit, and an anonymizer should remove a number that passes it rather than keep it.
    return compact.isascii() and compact.isalnum() and iban.is_valid(compact, check_country=False)


def ssn_valid(number: str) -> bool:
    """True if a 9-digit string is in a range the SSA issues (no 000/666/9xx area, 00 group,
    0000 serial).

    Kept by hand, not stdnum.us.ssn: stdnum also rejects the numbers the SSA voided after they
    were printed on sample cards and in advertising (078-05-1120, 219-09-9999, …), and those are
    exactly numbers people type, so the anonymizer must still remove them (the held-out set has
    one). The rule itself: SSA, "Social Security Number Randomization" (2011), POMS RM 10201.035.
    """
    if len(number) != 9 or not _ascii_digits(number):
        return False
    area, group, serial = number[:3], number[3:5], number[5:]
    if area in ("000", "666") or area[0] == "9":
        return False
    return group != "00" and serial != "0000"
