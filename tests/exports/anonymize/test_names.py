"""Personal names: the participant's own (known) identifiers, cued names and listed names,
with the hard negatives that must stay (models, medicines, weekdays, places, common words)."""

import pytest

from studyplatform.exports.anonymize import KnownIdentifiers, detect


def people(text: str, known: KnownIdentifiers | None = None) -> list[str]:
    return [text[s.start : s.end] for s in detect(text, known) if s.type == "PERSON"]


JOSE = KnownIdentifiers(
    names=("José Araújo",), emails=("jose.araujo@example.com.br",), ids=("P-10482", "jaraujo")
)


# --- known identifiers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aqui é o jose araujo de novo", ["jose araujo"]),
        ("JOSÉ falando", ["JOSÉ"]),
        ("signed, Araujo", ["Araujo"]),
        ("o Araújo respondeu", ["Araújo"]),
        ("meu login é jaraujo no app", ["jaraujo"]),
        ("painel: p-10482", ["p-10482"]),
        ("procure por jose.araujo no teams", ["jose.araujo"]),
    ],
)
def test_it_matches_known_identifiers_in_any_case_and_without_accents(text, expected):
    assert people(text, JOSE) == expected


def test_it_matches_a_known_email_as_an_email_and_not_its_parts_separately():
    text = "escreve pra jose.araujo@example.com.br"
    spans = detect(text, JOSE)
    assert [(s.type, text[s.start : s.end]) for s in spans] == [
        ("EMAIL", "jose.araujo@example.com.br")
    ]


def test_it_does_not_match_a_known_name_inside_another_word():
    assert people("josefina e araujoso", JOSE) == []


def test_it_matches_a_known_name_part_that_is_a_common_word_only_when_capitalised():
    rosa = KnownIdentifiers(names=("Rosa Costa",))
    assert people("comprei uma camisa rosa na costa", rosa) == []
    assert people("a Rosa mandou oi", rosa) == ["Rosa"]


# --- cued names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi, my name is Priya Raman and I'm a student", ["Priya Raman"]),
        ("meu nome é Ubiratã", ["Ubiratã"]),
        ("me chamo leocádia", []),  # lower case and not in the name list: not enough
        ("me chamo ana clara", ["ana clara"]),
        ("pode me chamar de Zuleica", ["Zuleica"]),
        ("call me Siobhan, everyone does", ["Siobhan"]),
        ("I'm Thandiwe from the Tuesday group", ["Thandiwe"]),
        ("sou a Deolinda, do grupo de terça", ["Deolinda"]),
        ("Oi Radamés, tudo bem?", ["Radamés"]),
        ("Thanks for everything.\nBest,\nAnselmo", ["Anselmo"]),
        ("Valeu!\nAbraços, Florisvaldo", ["Florisvaldo"]),
        ("my sister Ximena thinks so", ["Ximena"]),
        ("minha amiga Jurema disse", ["Jurema"]),
        ("My therapist, Dr. Zanella, agreed", ["Zanella"]),
    ],
)
def test_it_finds_names_introduced_by_a_cue_in_english_and_portuguese(text, expected):
    assert people(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I'm tired. I'm Brazilian and I'm Getting better",
        "I'm Sorry, this is Amazing",
        "Hi Claude, can you help?",
        "Oi Gemini, tudo bem?",
        "Thanks, ChatGPT!",
        "Hello World",
        "Olá pessoal, bom dia",
        "sou brasileira e sou estudante",
        "call me at 5pm",
    ],
)
def test_it_does_not_take_common_words_or_assistants_after_a_cue_for_names(text):
    assert people(text) == []


# --- listed names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yesterday Jennifer told me", ["Jennifer"]),
        ("falei com a Maria da Silva ontem", ["Maria da Silva"]),
        ("conversei com Rodrigo e Fernanda Carvalho", ["Rodrigo", "Fernanda Carvalho"]),
        ("I met Priya Johnson at work", ["Priya Johnson"]),
        ("Will Smith was there", ["Will Smith"]),
        ("Juliana disse que vem", ["Juliana"]),
    ],
)
def test_it_finds_capitalised_names_from_the_name_lists(text, expected):
    assert people(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Will this work with GPT-4o or Claude 3.5 Sonnet?",
        "May I ask why Llama 3 is slower than Gemini?",
        "Mark my words, 2024 will be better.",
        "Grace period ends on Friday.",
        "I started Sertraline in March, then Rivotril.",
        "Fluoxetina me deixou sem fome.",
        "Costa Rica está nos meus planos.",
        "Santos venceu ontem e Vitória perdeu.",
        "Campos alagados por causa da chuva.",
        "Fui para São Paulo e depois Paris.",
        "Natal em família, Páscoa na praia.",
        "Apple Watch says my heart rate is 62.",
        "Hope you're doing well. Faith in humanity restored.",
        "Rosa é minha cor favorita.",
    ],
)
def test_it_does_not_flag_models_medicines_places_or_capitalised_common_words(text):
    assert people(text) == []
