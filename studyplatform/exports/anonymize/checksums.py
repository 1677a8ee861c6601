"""Check-digit validation for the numbers whose format alone is too weak a signal.

The algorithms are public standards, implemented here from their definitions:

- Luhn (payment cards): ISO/IEC 7812-1, Annex B; the "mod 10" algorithm of H. P. Luhn,
  US patent 2,950,048 (1960).
- CPF (Brazilian taxpayer id): two mod-11 check digits, as specified by the Receita Federal
  (Instrução Normativa RFB nº 1.548/2015 and the public description of the "dígitos
  verificadores"): weights 10..2 for the first digit, 11..2 for the second.
- IBAN: ISO 13616-1:2020 with the ISO 7064 MOD 97-10 check (move the first four characters to
  the end, letters A=10 … Z=35, the number mod 97 must equal 1).
- US Social Security Number validity: the Social Security Administration never issues area
  000, 666 or 900-999, group 00 or serial 0000 (SSA, "Social Security Number Randomization",
  2011; Program Operations Manual System RM 10201.035).
"""

from __future__ import annotations

# Registered IBAN lengths for the countries participants are most likely to mention (ISO 13616
# registry, SWIFT "IBAN Registry"). Countries not listed fall back to the generic 15..34 range.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AT": 20, "BE": 16, "BR": 29, "CH": 21, "CZ": 24, "DE": 22, "DK": 18,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HU": 28, "IE": 22, "IT": 27,
    "LU": 20, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "TR": 26,
}  # fmt: skip


def digits_of(text: str) -> str:
    """The ASCII digits of `text`, in order (separators dropped)."""
    return "".join(ch for ch in text if "0" <= ch <= "9")


def luhn_valid(number: str) -> bool:
    """True if the digit string passes the Luhn mod-10 check (ISO/IEC 7812-1)."""
    if not number.isdigit():
        return False
    total = 0
    # Double every second digit counting from the right-most (the check digit itself is not
    # doubled); a doubled digit above 9 contributes the sum of its digits, i.e. minus 9.
    for position, char in enumerate(reversed(number)):
        digit = ord(char) - 48
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def cpf_valid(number: str) -> bool:
    """True if an 11-digit string has valid CPF check digits (Receita Federal mod-11 rule)."""
    if len(number) != 11 or not number.isdigit():
        return False
    # Repeated digits (000.000.000-00, 111.111.111-11 …) pass the arithmetic but are not
    # issued; they are also what people type as placeholders.
    if number == number[0] * 11:
        return False
    values = [ord(ch) - 48 for ch in number]
    for length in (9, 10):
        weighted = sum(
            value * weight
            for value, weight in zip(values[:length], range(length + 1, 1, -1), strict=True)
        )
        check = (weighted * 10) % 11
        if check == 10:
            check = 0
        if check != values[length]:
            return False
    return True


def iban_valid(candidate: str) -> bool:
    """True if `candidate` (spaces allowed) is an IBAN with a valid ISO 7064 mod-97 check."""
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact.isalnum() or not compact.isascii():
        return False
    country = compact[:2]
    if not country.isalpha() or not compact[2:4].isdigit():
        return False
    expected = IBAN_LENGTHS.get(country)
    if expected is not None and len(compact) != expected:
        return False
    rearranged = compact[4:] + compact[:4]
    # int(ch, 36) maps 0-9 to themselves and A-Z to 10-35, exactly the ISO 13616 conversion.
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


def ssn_valid(number: str) -> bool:
    """True if a 9-digit string is in a range the SSA issues (no 000/666/9xx area, 00 group,
    0000 serial)."""
    if len(number) != 9 or not number.isdigit():
        return False
    area, group, serial = number[:3], number[3:5], number[5:]
    if area in ("000", "666") or area[0] == "9":
        return False
    return group != "00" and serial != "0000"
