"""Structured identifiers: e-mail, phone, URL, IP, card, SSN, CPF, IBAN, handle, address, postal
code and date of birth, each with positives and hard negatives in English and Portuguese."""

import pytest

from studyplatform.exports.anonymize import detect


def found(text: str, span_type: str) -> list[str]:
    return [text[s.start : s.end] for s in detect(text) if s.type == span_type]


def all_found(text: str) -> list[tuple[str, str]]:
    return [(s.type, text[s.start : s.end]) for s in detect(text)]


# --- e-mail and handles -----------------------------------------------------------------------


def test_it_finds_an_email_address_in_english_and_portuguese():
    assert found("write to me at priya.r+study@example.org today", "EMAIL") == [
        "priya.r+study@example.org"
    ]
    assert found("meu email é Ju_Martins@uol.com.br, beleza?", "EMAIL") == ["Ju_Martins@uol.com.br"]


def test_it_finds_a_spelled_out_email_address():
    assert found("mail me: ana.souza [at] gmail [dot] com", "EMAIL") == [
        "ana.souza [at] gmail [dot] com"
    ]
    assert found("é joao arroba gmail ponto com", "EMAIL") == ["joao arroba gmail ponto com"]


def test_it_does_not_take_at_in_prose_for_an_email():
    assert found("let's meet at home dot or at the cafe", "EMAIL") == []


def test_it_finds_a_handle_but_not_the_at_of_an_email():
    text = "follow @bia_fotografia, or email bia@example.com"
    assert found(text, "HANDLE") == ["@bia_fotografia"]
    assert found(text, "EMAIL") == ["bia@example.com"]


def test_it_ignores_group_mentions_and_assistant_handles():
    assert found("@everyone the survey closes soon, ask @ChatGPT", "HANDLE") == []


# --- phones -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "(11) 98765-4321",
        "+55 11 98765 4321",
        "+55 (21) 99876-5432",
        "11 98765-4321",
        "(11) 3456-7890",
        "98765-4321",
        "(415) 555-0132",
        "415-555-0132",
        "+1 415 555 0132",
        "415.555.0132",
        "1-800-555-0199",
        "+44 20 7946 0958",
        "+351 912 345 678",
    ],
)
def test_it_finds_phone_numbers_in_brazilian_us_and_international_formats(phone):
    assert found(f"meu número / my number: {phone}, ok?", "PHONE") == [phone]


def test_it_finds_a_bare_number_only_after_a_phone_word():
    assert found("me chama no zap 11987654321", "PHONE") == ["11987654321"]
    assert found("pedido 11987654321 ainda não chegou", "PHONE") == []


@pytest.mark.parametrize(
    "text",
    [
        "It costs R$ 1.234,56 in total",
        "It was $45.99 plus tax",
        "the meeting is at 14:30, or 3pm",
        "we shipped version 2.0.1 and 10.4.12",
        "sales grew 12.5% in 2023",
        "I placed 12 orders, order #48213977",
        "o protocolo 2023-998877 foi aberto",
        "score 3-1 after 90 minutes, 2019-2020 season",
        "Invoice 2023-0045 was paid on 02/03/2023",
    ],
)
def test_it_does_not_flag_prices_times_versions_or_counts_as_phone_numbers(text):
    assert found(text, "PHONE") == []


# --- URLs and IPs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://www.example.com/posts/2023?ref=chat",
        "www.x.com.br",
        "example.com",
        "meu-blog.com.br/sobre",
        "github.com/danruns",
        "http://studio-lima.blogspot.com",
    ],
)
def test_it_finds_urls_and_bare_domains(url):
    assert found(f"see {url}.", "URL") == [url]


def test_it_does_not_take_file_names_or_abbreviations_for_domains():
    assert found("open main.py, then model.pt and README.md, e.g. notes.txt", "URL") == []


def test_it_keeps_a_closing_parenthesis_only_when_the_url_opened_one():
    text = "(read https://en.wikipedia.org/wiki/Sleep_(disambiguation))"
    assert found(text, "URL") == ["https://en.wikipedia.org/wiki/Sleep_(disambiguation)"]


def test_it_finds_ipv4_and_ipv6_addresses():
    text = "router 192.168.0.1, server 2001:db8::8a2e:370:7334 and fe80::1"
    assert found(text, "IP") == ["192.168.0.1", "2001:db8::8a2e:370:7334", "fe80::1"]


def test_it_does_not_take_clock_times_or_versions_for_ips():
    assert found("at 14:30:00 we deployed 1.2.3 and 300.1.2.3", "IP") == []


# --- checksummed numbers ----------------------------------------------------------------------


def test_it_finds_luhn_valid_card_numbers_with_spaces_or_dashes():
    assert found("card 4111 1111 1111 1111 exp 12/27", "CREDIT_CARD") == ["4111 1111 1111 1111"]
    assert found("cartão 5500-0000-0000-0004", "CREDIT_CARD") == ["5500-0000-0000-0004"]
    assert found("amex 3782 822463 10005", "CREDIT_CARD") == ["3782 822463 10005"]


def test_it_does_not_flag_a_card_number_with_an_invalid_luhn_digit():
    assert found("card 4111 1111 1111 1112", "CREDIT_CARD") == []


def test_it_finds_a_valid_ssn_and_rejects_invalid_areas():
    assert found("my SSN is 536-22-1234", "SSN") == ["536-22-1234"]
    for invalid in ("000-12-3456", "666-12-3456", "912-12-3456", "536-00-1234", "536-22-0000"):
        assert found(f"SSN {invalid}", "SSN") == []


def test_it_finds_an_undashed_ssn_only_after_an_ssn_cue():
    assert found("social security number 536221234", "SSN") == ["536221234"]
    assert found("tracking 536221234", "SSN") == []


def test_it_finds_a_formatted_cpf_with_valid_check_digits():
    assert found("meu CPF: 529.982.247-25", "CPF") == ["529.982.247-25"]


def test_it_finds_eleven_cpf_digits_only_near_the_word_cpf():
    assert found("cpf 52998224725 pra cadastro", "CPF") == ["52998224725"]
    assert found("código 52998224725 do pedido", "CPF") == []


def test_it_does_not_flag_a_cpf_with_wrong_check_digits_or_repeated_digits():
    assert found("CPF 529.982.247-26", "CPF") == []
    assert found("CPF 111.111.111-11", "CPF") == []


def test_it_finds_ibans_with_a_valid_checksum():
    assert found("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN") == [
        "DE89 3704 0044 0532 0130 00"
    ]
    assert found("conta GB82WEST12345698765432", "IBAN") == ["GB82WEST12345698765432"]


def test_it_does_not_flag_an_iban_with_a_bad_checksum():
    assert found("IBAN DE88 3704 0044 0532 0130 00", "IBAN") == []


# --- addresses and postal codes ---------------------------------------------------------------


def test_it_finds_english_street_addresses():
    assert found("we live at 742 Evergreen Terrace now", "ADDRESS") == ["742 Evergreen Terrace"]
    assert found("ship to 55 W 42nd St, Apt 3B please", "ADDRESS") == ["55 W 42nd St, Apt 3B"]


def test_it_finds_portuguese_street_addresses():
    assert found("moro na Rua das Laranjeiras, 215, apto 52, no Rio", "ADDRESS") == [
        "Rua das Laranjeiras, 215, apto 52"
    ]
    assert found("fica na Av. Paulista 1578", "ADDRESS") == ["Av. Paulista 1578"]
    assert found("é na rua augusta 1500", "ADDRESS") == ["rua augusta 1500"]


def test_it_does_not_take_distances_or_counts_for_addresses():
    assert found("I drove 45 miles down the road", "ADDRESS") == []
    assert found("andei na rua com 3 amigos", "ADDRESS") == []
    assert found("Rua sem saída, 3 carros parados", "ADDRESS") == []


def test_it_finds_postal_codes_only_in_address_context():
    assert found("CEP 01310-100, São Paulo", "POSTAL_CODE") == ["01310-100"]
    assert found("Springfield, IL 62704", "POSTAL_CODE") == ["62704"]
    assert found("my postcode is SW1A 2AA", "POSTAL_CODE") == ["SW1A 2AA"]
    assert found("I walked 12345 steps and scored 01310-100 on the quiz", "POSTAL_CODE") == []
    assert found("my laptop has an M2 8GB chip", "POSTAL_CODE") == []


# --- dates of birth ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("I was born on March 3rd, 1985.", "March 3rd, 1985"),
        ("DOB: 1990-04-12", "1990-04-12"),
        ("my birthday is 8/26/1994 btw", "8/26/1994"),
        ("nasci em 12/03/1990 em Recife", "12/03/1990"),
        ("data de nascimento: 5 de maio de 1988", "5 de maio de 1988"),
        ("meu aniversário é dia 14 de fevereiro", "dia 14 de fevereiro"),
        ("15/07 é meu niver!", "15/07"),
    ],
)
def test_it_finds_a_date_next_to_a_birth_cue(text, date):
    assert found(text, "DATE_OF_BIRTH") == [date]


def test_it_does_not_flag_dates_that_are_not_birth_dates():
    assert found("the appointment is on 12/03/2024 at 10:15", "DATE_OF_BIRTH") == []
    assert found("meu aniversário de casamento é 20/11", "DATE_OF_BIRTH") == []
    assert found("My birthday party was great. The exam is on 12/05.", "DATE_OF_BIRTH") == []
    assert found("I was born in 1990", "DATE_OF_BIRTH") == []
