"""Surrogates, overlap resolution, offsets, checksums and the package's purity."""

import ast
import sys
from itertools import pairwise
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from studyplatform.exports.anonymize import (
    ENTITY_TYPES,
    Anonymizer,
    KnownIdentifiers,
    Span,
    anonymize,
    detect,
    normalise_value,
)
from studyplatform.exports.anonymize.checksums import cpf_valid, iban_valid, luhn_valid, ssn_valid
from studyplatform.exports.anonymize.spans import resolve_overlaps

PACKAGE = Path(__file__).resolve().parents[3] / "studyplatform" / "exports" / "anonymize"


def test_it_replaces_identifiers_with_typed_numbered_surrogates():
    # given: a participant who is known to the platform
    anonymizer = Anonymizer(known=KnownIdentifiers(names=("Ana Souza",)))
    # when: a message with a name, a phone and an e-mail is anonymized
    result = anonymizer.anonymize(
        "Oi, sou a Ana Souza, meu zap é (11) 98765-4321 e email ana@x.com"
    )
    # then: each is replaced by a typed surrogate
    assert result.text == "Oi, sou a [PERSON_1], meu zap é [PHONE_1] e email [EMAIL_1]"
    assert result.surrogates == ["[PERSON_1]", "[PHONE_1]", "[EMAIL_1]"]


def test_it_gives_the_same_value_the_same_surrogate_across_texts_of_one_participant():
    anonymizer = Anonymizer()
    first = anonymizer.anonymize("call (415) 555-0132 or ask Jennifer")
    second = anonymizer.anonymize("Jennifer said +1 415 555 0132 works, or 212-555-0199")
    assert first.text == "call [PHONE_1] or ask [PERSON_1]"
    assert second.text == "[PERSON_1] said [PHONE_1] works, or [PHONE_2]"


def test_it_normalises_names_and_phones_before_choosing_a_surrogate():
    anonymizer = Anonymizer()
    a = anonymizer.anonymize("meu nome é José Araújo, zap (11) 98765-4321")
    b = anonymizer.anonymize("my name is jose araujo, phone +55 11 98765 4321")
    assert a.surrogates == b.surrogates == ["[PERSON_1]", "[PHONE_1]"]
    assert normalise_value("PERSON", "Ana-Clara!") == normalise_value("PERSON", "ana clara")


def test_it_gives_every_part_of_a_known_name_the_full_names_surrogate():
    anonymizer = Anonymizer(known=KnownIdentifiers(names=("José Araújo",)))
    result = anonymizer.anonymize("José Araújo aqui. Pode chamar de jose, ou Araujo.")
    assert result.text == "[PERSON_1] aqui. Pode chamar de [PERSON_1], ou [PERSON_1]."


def test_it_numbers_surrogates_afresh_for_each_participant():
    assert anonymize("ask Jennifer").text == "ask [PERSON_1]"
    assert anonymize("ask Rodrigo").text == "ask [PERSON_1]"


def test_it_reports_span_offsets_into_the_input_text():
    text = "Olá! Meu email é maria.lu@example.org e o site é www.exemplo.com.br."
    spans = detect(text)
    assert [(text[s.start : s.end], s.type) for s in spans] == [
        ("maria.lu@example.org", "EMAIL"),
        ("www.exemplo.com.br", "URL"),
    ]
    assert all(isinstance(s, Span) and s.detector for s in spans)


def test_it_keeps_offsets_right_after_accented_and_astral_characters():
    text = "ção 😀 İstanbul 😀 mail: a@b.co"
    [span] = detect(text)
    assert text[span.start : span.end] == "a@b.co"


def test_it_lets_structured_types_beat_a_name_inside_them():
    text = "moro na Rua Maria Antônia, 294 e escrevo pra maria.silva@example.com"
    assert [s.type for s in detect(text)] == ["ADDRESS", "EMAIL"]


def test_it_resolves_overlaps_deterministically_by_priority_then_length():
    spans = [
        Span(0, 10, "PERSON", "name_list"),
        Span(0, 10, "EMAIL", "email"),
        Span(5, 20, "URL", "url"),
        Span(21, 25, "PHONE", "phone_us"),
        Span(21, 30, "PHONE", "phone_intl"),
    ]
    expected = [Span(0, 10, "EMAIL", "email"), Span(21, 30, "PHONE", "phone_intl")]
    assert resolve_overlaps(spans) == expected
    assert resolve_overlaps(list(reversed(spans))) == expected


def test_it_anonymizes_a_batch_exactly_like_one_text_at_a_time():
    texts = [
        "Hi, I'm Priya. Call (415) 555-0132",
        "tel: 11 98765-4321\x00and CEP 01310-100",
        "Moro na Rua Augusta, 1500",
        "",
        "Priya again, born on March 3, 1985",
    ]
    one_by_one = Anonymizer()
    together = Anonymizer()
    assert together.anonymize_many(texts) == [one_by_one.anonymize(text) for text in texts]


def test_it_validates_check_digits_with_the_published_algorithms():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert (
        cpf_valid("52998224725") and not cpf_valid("52998224724") and not cpf_valid("00000000000")
    )
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid(
        "DE89 3704 0044 0532 0130 01"
    )
    assert ssn_valid("536221234") and not ssn_valid("666221234") and not ssn_valid("536001234")
    # an IBAN must also fit its country's registered format: Italy's BBAN opens with a letter,
    # so an all-digit one is refused even though its mod-97 check holds
    assert iban_valid("IT60 X054 2811 1010 0000 0123 456")
    assert not iban_valid("IT29 1054 2811 1010 0000 0123 456")


def test_voided_sample_ssns_are_still_identifiers_to_remove():
    # the SSA voided these after printing them on sample cards; people still type them
    assert ssn_valid("078051120") and ssn_valid("219099999")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_it_never_returns_overlapping_or_out_of_range_spans(text):
    spans = detect(text)
    assert all(0 <= s.start < s.end <= len(text) and s.type in ENTITY_TYPES for s in spans)
    assert all(a.end <= b.start for a, b in pairwise(spans))
    result = anonymize(text)
    assert len(result.spans) == len(result.surrogates)


def test_the_package_imports_only_the_standard_library_and_stdnum():
    # no Django, no other third-party package (and so no `regex`): relative imports, stdlib, and
    # python-stdnum (pure Python) for the check digits
    allowed = set(sys.stdlib_module_names) | {"stdnum"}
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in allowed, f"{path.name} imports {module}"


def test_it_gives_a_known_email_one_surrogate_whichever_detector_found_it():
    anonymizer = Anonymizer(known=KnownIdentifiers(emails=("Ja@X.com",)))
    first = anonymizer.anonymize("mail Ja@X.com")
    second = anonymizer.anonymize("or ja@x.com")
    assert first.text == "mail [EMAIL_1]"
    assert second.text == "or [EMAIL_1]"
