"""Generate the synthetic evaluation corpus for the text anonymizer.

    python benchmarks/make_anonymizer_corpus.py > benchmarks/data/anonymizer_corpus.jsonl

Deterministic (fixed seed). Every message is invented for this project: chat-like English and
Brazilian Portuguese messages from fictitious participants, with gold spans for every
identifier and "hard negatives" that must not be flagged (model and drug names, prices,
times, versions, years, dates that are not birth dates, capitalised common words). Values are
synthetic: phone numbers use fictional ranges (US 555-01xx, UK Ofcom drama ranges), card
numbers, CPFs and IBANs are random digits with valid check digits, e-mail domains are
example/test domains or common webmail providers with invented local parts.

Messages "m…" carry identifiers, "n…" are hard negatives, "f…" are ordinary identifier-free
chat messages and assistant replies, which make up most of a real study chat.

Each line: {"id", "lang", "participant", "text", "known"?, "spans": [{"start", "end",
"type", "kind"}]}; "kind" is "known" for the participant's own identifiers, "context" for a
name that only context reveals (not in the shipped name list), "listed" otherwise.
"""

from __future__ import annotations

import json
import random
import string
import sys
from dataclasses import dataclass, field

SEED = 20240611

# --------------------------------------------------------------------------------------------
# Value generators
# --------------------------------------------------------------------------------------------

# Names that the shipped list knows, and names it does not (found only through context).
LISTED_FIRST_EN = [
    "Jennifer",
    "Michael",
    "Sarah",
    "David",
    "Emily",
    "Jason",
    "Rachel",
    "Kevin",
    "Megan",
    "Brian",
    "Laura",
    "Tyler",
    "Hannah",
    "Ethan",
    "Olivia",
    "Noah",
]
LISTED_FIRST_PT = [
    "Juliana",
    "Rafael",
    "Camila",
    "Thiago",
    "Larissa",
    "Gustavo",
    "Beatriz",
    "Felipe",
    "Mariana",
    "Rodrigo",
    "Letícia",
    "Vinícius",
    "Fernanda",
    "Matheus",
    "Gabriela",
    "Caio",
]
LISTED_LAST_EN = [
    "Miller",
    "Johnson",
    "Garcia",
    "Thompson",
    "Robinson",
    "Henderson",
    "Sullivan",
    "Patterson",
    "Coleman",
    "Fischer",
]
LISTED_LAST_PT = [
    "Oliveira",
    "Santos",
    "Ferreira",
    "Carvalho",
    "Almeida",
    "Nascimento",
    "Ribeiro",
    "Gonçalves",
    "Cavalcanti",
    "Nogueira",
    "Barbosa",
]
UNLISTED_FIRST = [
    "Priya",
    "Thandiwe",
    "Kaito",
    "Oluwaseun",
    "Anneliese",
    "Ximena",
    "Tadeusz",
    "Yerlan",
    "Siobhan",
    "Bartholomew",
    "Ndidi",
    "Leocádia",
    "Iolanda",
    "Ubiratã",
    "Jurema",
    "Anselmo",
    "Florisvaldo",
    "Deolinda",
    "Odete",
    "Clarice",
    "Zuleica",
    "Radamés",
    "Eustáquio",
    "Aurelina",
]
UNLISTED_LAST = [
    "Raman",
    "Okafor",
    "Brzezinski",
    "Nakamura",
    "Haldorsen",
    "Quispe",
    "Vukovic",
    "Abernathy",
    "Zanella",
    "Bortolotto",
    "Pimenta",
    "Tavolaro",
    "Scalabrini",
    "Wojcik",
    "Kowalczyk",
    "Albuquerque",
    "Loureiro",
    "Figueira",
]

PARTICIPANTS = [
    # (display name, email, id, lang)
    ("José Araújo", "jose.araujo@example.com.br", "P-10482", "pt"),
    ("Ana Beatriz Souza", "anabsouza@gmail.com", "aninha_bs", "pt"),
    ("João Pedro Conceição", "jp.conceicao@hotmail.com", "P-20931", "pt"),
    ("Fernanda Lima", "fe.lima92@yahoo.com.br", "fernandinha92", "pt"),
    ("Márcio Gonçalves", "marcio.g@uol.com.br", "P-33107", "pt"),
    ("Luíza Helena Prado", "luizahprado@outlook.com", "luhprado", "pt"),
    ("Emily Carter", "emily.carter@example.org", "P-40077", "en"),
    ("Marcus Whitfield", "mwhitfield@test.com", "mwhit", "en"),
    ("Olivia Brennan", "obrennan88@gmail.com", "P-51234", "en"),
    ("Daniel Okonkwo", "dan.okonkwo@example.net", "dokonkwo", "en"),
    ("Sophie Lindqvist", "sophie.l@example.com", "P-62001", "en"),
    ("Rafael Tavares", "rafa.tavares@gmail.com", "rtavares", "pt"),
]

EMAIL_DOMAINS = [
    "gmail.com",
    "hotmail.com",
    "yahoo.com.br",
    "outlook.com",
    "example.com",
    "example.org",
    "uol.com.br",
    "icloud.com",
    "proton.me",
    "empresa.com.br",
    "univ.edu",
]
LOCAL_WORDS = [
    "lu",
    "bia",
    "carol",
    "dudu",
    "tati",
    "mike",
    "jess",
    "sam",
    "nanda",
    "gui",
    "rafa",
    "vini",
    "kate",
    "tom",
    "ally",
    "nico",
]


def luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = body + check
        total = 0
        for position, char in enumerate(reversed(candidate)):
            digit = int(char)
            if position % 2 == 1:
                digit *= 2
                if digit > 9:
                    digit -= 9
            total += digit
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def cpf_complete(rng: random.Random) -> str:
    while True:
        digits = [rng.randrange(10) for _ in range(9)]
        if len(set(digits)) > 1:
            break
    for length in (9, 10):
        weighted = sum(d * w for d, w in zip(digits, range(length + 1, 1, -1), strict=True))
        check = (weighted * 10) % 11
        digits.append(0 if check == 10 else check)
    return "".join(map(str, digits))


IBAN_FORMATS = {"DE": 18, "GB": 18, "BR": 25, "FR": 23, "PT": 21, "ES": 20, "NL": 14, "IT": 23}


def iban_complete(rng: random.Random, country: str) -> str:
    body_length = IBAN_FORMATS[country]
    if country == "GB":
        body = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(
            rng.choice(string.digits) for _ in range(14)
        )
    elif country == "NL":
        body = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(
            rng.choice(string.digits) for _ in range(10)
        )
    elif country == "IT":
        # The Italian BBAN starts with its CIN check letter (ISO 13616 registry: 1!a5!n5!n12!c).
        body = rng.choice(string.ascii_uppercase) + "".join(
            rng.choice(string.digits) for _ in range(22)
        )
    elif country == "BR":
        body = (
            "".join(rng.choice(string.digits) for _ in range(23))
            + rng.choice("CP")
            + rng.choice("12")
        )
    else:
        body = "".join(rng.choice(string.digits) for _ in range(body_length))
    numeric = "".join(str(int(ch, 36)) for ch in body + country + "00")
    check = 98 - int(numeric) % 97
    return f"{country}{check:02d}{body}"


def group4(value: str) -> str:
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4))


@dataclass
class Gen:
    rng: random.Random

    def pick(self, options):
        return self.rng.choice(options)

    def email(self) -> str:
        local = (
            self.pick(LOCAL_WORDS)
            + self.pick(["", ".", "_"])
            + self.pick(["silva", "m", "2020", "xyz", "costa", "b", "lee", "91", "dev"])
        )
        return self.pick([local, local.capitalize()]) + "@" + self.pick(EMAIL_DOMAINS)

    def phone_br(self) -> str:
        ddd = self.pick(["11", "21", "31", "41", "51", "61", "71", "81", "85", "19", "48", "62"])
        mobile = (
            "9"
            + str(self.rng.randrange(6, 10))
            + "".join(self.pick(string.digits) for _ in range(3))
        )
        tail = "".join(self.pick(string.digits) for _ in range(4))
        landline = str(self.rng.randrange(2, 6)) + "".join(
            self.pick(string.digits) for _ in range(3)
        )
        return self.pick(
            [
                f"({ddd}) {mobile}-{tail}",
                f"+55 {ddd} {mobile} {tail}",
                f"+55 ({ddd}) {mobile}-{tail}",
                f"{ddd} {mobile}-{tail}",
                f"({ddd}) {landline}-{tail}",
                f"{ddd}{mobile}{tail}",
                f"+55{ddd}{mobile}{tail}",
                f"{mobile}-{tail}",
                f"({ddd}){mobile}-{tail}",
                f"{ddd} {mobile[0]} {mobile[1:]}-{tail}",
            ]
        )

    def phone_us(self) -> str:
        area = self.pick(["415", "212", "646", "312", "617", "503", "206", "737", "908", "202"])
        line = f"01{self.rng.randrange(10)}{self.rng.randrange(10)}"
        return self.pick(
            [
                f"({area}) 555-{line}",
                f"{area}-555-{line}",
                f"+1 {area} 555 {line}",
                f"{area}.555.{line}",
                f"+1 ({area}) 555-{line}",
                f"1-{area}-555-{line}",
                f"{area} 555 {line}",
            ]
        )

    def phone_intl(self) -> str:
        r = self.rng.randrange
        return self.pick(
            [
                f"+44 20 7946 0{self.rng.randrange(100, 999)}",
                f"+44 7700 900{self.rng.randrange(100, 999)}",
                f"+351 91{r(0, 9)} {r(100, 999)} {r(100, 999)}",
                f"+49 30 {self.rng.randrange(1000000, 9999999)}",
                f"+34 6{r(10, 99)} {r(100, 999)} {r(100, 999)}",
                f"020 7946 0{self.rng.randrange(100, 999)}",
            ]
        )

    def phone(self, lang: str) -> str:
        roll = self.rng.random()
        if roll < 0.15:
            return self.phone_intl()
        if lang == "pt":
            return self.phone_br() if roll < 0.9 else self.phone_us()
        return self.phone_us() if roll < 0.9 else self.phone_br()

    def url(self) -> str:
        slug = self.pick(
            [
                "meu-blog",
                "portfolio",
                "ana-fotos",
                "receitas-da-vo",
                "johnsmith",
                "mywork",
                "studio-lima",
                "danruns",
            ]
        )
        return self.pick(
            [
                f"https://{slug}.com.br/sobre",
                f"https://www.{slug}.com/posts/2023/05/hello?ref=chat",
                f"http://{slug}.blogspot.com",
                f"www.{slug}.com.br",
                f"{slug}.com",
                f"{slug}.org/about",
                f"https://github.com/{slug}",
                f"linkedin.com/in/{slug}",
                f"https://instagram.com/{slug.replace('-', '_')}",
                f"{slug}.net",
                f"https://docs.google.com/document/d/1aB{self.rng.randrange(10000, 99999)}xYz/edit",
            ]
        )

    def ip(self) -> str:
        r = self.rng.randrange
        if self.rng.random() < 0.7:
            return self.pick(
                [
                    f"192.168.{self.rng.randrange(0, 256)}.{self.rng.randrange(1, 255)}",
                    f"10.{r(0, 256)}.{r(0, 256)}.{r(1, 255)}",
                    f"{r(11, 223)}.{r(0, 256)}.{r(0, 256)}.{r(1, 255)}",
                ]
            )
        groups = [f"{self.rng.randrange(0, 65536):x}" for _ in range(8)]
        return self.pick(
            [
                ":".join(groups),
                f"2001:db8::{groups[0]}:{groups[1]}",
                f"fe80::{groups[2]}:{groups[3]}:{groups[4]}:{groups[5]}",
                f"2804:14c:{groups[0]}::{groups[1]}",
            ]
        )

    def card(self) -> str:
        kind = self.pick(["visa", "master", "amex", "elo", "visa13"])
        if kind == "amex":
            number = luhn_complete(self.rng, self.pick(["34", "37"]), 15)
            sep = self.pick([" ", "-", ""])
            return f"{number[:4]}{sep}{number[4:10]}{sep}{number[10:]}"
        if kind == "visa13":
            return luhn_complete(self.rng, "4", 13)
        prefix = {
            "visa": "4",
            "master": self.pick(["51", "53", "55", "2221"]),
            "elo": self.pick(["636368", "504175", "509048"]),
        }[kind]
        number = luhn_complete(self.rng, prefix, 16)
        sep = self.pick([" ", "-", "", " "])
        return sep.join(number[i : i + 4] for i in range(0, 16, 4))

    def ssn(self) -> str:
        area = self.rng.randrange(1, 900)
        while area == 666:
            area = self.rng.randrange(1, 900)
        return f"{area:03d}-{self.rng.randrange(1, 100):02d}-{self.rng.randrange(1, 10000):04d}"

    def cpf(self, formatted: bool = True) -> str:
        value = cpf_complete(self.rng)
        if formatted:
            return f"{value[:3]}.{value[3:6]}.{value[6:9]}-{value[9:]}"
        return value

    def iban(self) -> str:
        value = iban_complete(self.rng, self.pick(list(IBAN_FORMATS)))
        return group4(value) if self.rng.random() < 0.7 else value

    def address_en(self) -> str:
        number = self.rng.randrange(3, 9999)
        street = self.pick(
            [
                "Maple",
                "Evergreen",
                "Oak",
                "Sunset",
                "Lincoln",
                "Cedar Hollow",
                "Washington",
                "Elm",
                "Harbor View",
                "Juniper",
            ]
        )
        kind = self.pick(
            ["Street", "St", "Ave", "Avenue", "Road", "Rd", "Lane", "Drive", "Blvd", "Court", "Way"]
        )
        extra = self.pick(["", "", "", ", Apt 4B", " Apt 12", ", Suite 210", ", Unit 7"])
        prefix = self.pick(["", "", "N ", "West "])
        return f"{number} {prefix}{street} {kind}{extra}"

    def address_pt(self) -> str:
        street = self.pick(
            [
                "Rua das Laranjeiras",
                "Rua Augusta",
                "Av. Paulista",
                "Avenida Brigadeiro Faria Lima",
                "Rua Coronel Oscar Porto",
                "Rua 25 de Março",
                "Alameda Santos",
                "Travessa do Ouvidor",
                "Rua Dr. Arnaldo",
                "Avenida Sete de Setembro",
                "Rua Padre Chagas",
                "Praça da Liberdade",
                "Estrada do Galeão",
            ]
        )
        number = self.rng.randrange(2, 4000)
        sep = self.pick([", ", " ", ", nº ", ", n. "])
        extra = self.pick(["", "", ", apto 52", " apto 1203", ", casa 2", ", bloco B", " ap. 31"])
        return f"{street}{sep}{number}{extra}"

    def cep(self) -> str:
        return f"{self.rng.randrange(1000, 99999):05d}-{self.rng.randrange(0, 1000):03d}"

    def zip_en(self) -> str:
        return f"{self.rng.randrange(10000, 99999)}" + self.pick(
            ["", "", f"-{self.rng.randrange(1000, 9999)}"]
        )

    def uk_postcode(self) -> str:
        return self.pick(
            [
                "SW1A 2AA",
                "EC1A 1BB",
                "M1 1AE",
                "B33 8TH",
                "CR2 6XH",
                "DN55 1PT",
                "W1A 0AX",
                "LS1 4DY",
            ]
        )

    def dob(self, lang: str) -> str:
        day, month, year = (
            self.rng.randrange(1, 29),
            self.rng.randrange(1, 13),
            self.rng.randrange(1950, 2006),
        )
        months_en = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ]
        months_pt = [
            "janeiro",
            "fevereiro",
            "março",
            "abril",
            "maio",
            "junho",
            "julho",
            "agosto",
            "setembro",
            "outubro",
            "novembro",
            "dezembro",
        ]
        if lang == "pt":
            return self.pick(
                [
                    f"{day:02d}/{month:02d}/{year}",
                    f"{day} de {months_pt[month - 1]} de {year}",
                    f"{day}/{month}/{str(year)[2:]}",
                    f"{day} de {months_pt[month - 1]}",
                    f"{day:02d}.{month:02d}.{year}",
                ]
            )
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(day if day < 20 else day % 10, "th")
        return self.pick(
            [
                f"{months_en[month - 1]} {day}, {year}",
                f"{month}/{day}/{year}",
                f"{day} {months_en[month - 1]} {year}",
                f"{months_en[month - 1][:3]} {day}{suffix}",
                f"{year}-{month:02d}-{day:02d}",
                f"{months_en[month - 1]} {day}{suffix}",
            ]
        )

    def handle(self) -> str:
        return "@" + self.pick(
            [
                "ju.martins",
                "dan_runs",
                "bia_fotografia",
                "the_real_kev",
                "nanda.art",
                "lucas.dev",
                "mari_oliveira",
                "tomtom88",
                "carol.yoga",
                "fe_lima",
            ]
        )


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------
# A template is a list of pieces: plain strings, or (TYPE, producer) where producer returns the
# surface text. Gold spans are computed from the pieces, so offsets are exact by construction.


@dataclass
class Message:
    lang: str
    participant: int
    pieces: list = field(default_factory=list)


def render(pieces) -> tuple[str, list[dict]]:
    text = ""
    spans = []
    for piece in pieces:
        if isinstance(piece, str):
            text += piece
        else:
            span_type, value, kind = piece
            start = len(text)
            text += value
            spans.append({"start": start, "end": len(text), "type": span_type, "kind": kind})
    return text, spans


def strip_accents_lower(value: str) -> str:
    import unicodedata

    return "".join(
        ch for ch in unicodedata.normalize("NFKD", value) if not unicodedata.combining(ch)
    ).lower()


def known_variant(rng: random.Random, name: str) -> str:
    parts = name.split()
    return rng.choice(
        [
            parts[0],
            parts[0].lower(),
            strip_accents_lower(parts[0]),
            name,
            strip_accents_lower(name),
            name.upper(),
            parts[-1],
            strip_accents_lower(parts[-1]).capitalize(),
        ]
    )


def build_messages(rng: random.Random) -> list[tuple[str, int, list]]:
    g = Gen(rng)
    out: list[tuple[str, int, list]] = []

    listed = set(
        LISTED_FIRST_EN + LISTED_FIRST_PT + LISTED_LAST_EN + LISTED_LAST_PT + ["da", "dos"]
    )

    def P(value: str, kind: str = ""):
        if not kind:
            kind = "listed" if all(part in listed for part in value.split()) else "context"
        return ("PERSON", value, kind)

    def T(span_type: str, value: str):
        return (span_type, value, "")

    def listed_name(lang: str, full: bool = False) -> str:
        first = rng.choice(LISTED_FIRST_PT if lang == "pt" else LISTED_FIRST_EN)
        if full or rng.random() < 0.4:
            last = rng.choice(LISTED_LAST_PT if lang == "pt" else LISTED_LAST_EN)
            connector = (
                rng.choice([" ", " ", " da ", " dos "])
                if lang == "pt" and last in ("Silva", "Santos", "Conceição")
                else " "
            )
            return first + connector + last
        return first

    def unlisted_name() -> str:
        first = rng.choice(UNLISTED_FIRST)
        return first + (" " + rng.choice(UNLISTED_LAST) if rng.random() < 0.4 else "")

    for index, (name, email, pid, lang) in enumerate(PARTICIPANTS):
        first = name.split()[0]
        first_plain = strip_accents_lower(first)
        local = email.split("@")[0]

        def kv(name: str = name) -> str:
            return known_variant(rng, name)

        en = [
            [
                "hey, it's ",
                P(kv(), "known"),
                " again. can you help me write an email to my landlord?",
            ],
            [
                "My username on the panel is ",
                P(pid, "known"),
                ", in case that matters for the study.",
            ],
            [
                "Please draft a cover letter. Sign it as ",
                P(name, "known"),
                ", ",
                T("EMAIL", email),
                ", ",
                T("PHONE", g.phone("en")),
                ".",
            ],
            [
                "I'm ",
                P(first, "known"),
                " and I've been using the assistant mostly at night when I can't sleep.",
            ],
            [
                "ok so my boss ",
                P(listed_name("en"), "listed"),
                " keeps scheduling meetings at 7am and I'm exhausted",
            ],
            ["my sister ", P(unlisted_name(), "context"), " thinks I use ChatGPT too much lol"],
            [
                "Can you check this resume? ",
                P(name.upper(), "known"),
                " — ",
                T("EMAIL", email),
                " — ",
                T("URL", g.url()),
            ],
            [
                "I had a fight with ",
                P(listed_name("en", full=True), "listed"),
                " yesterday and I don't know how to apologize.",
            ],
            ["text me at ", T("PHONE", g.phone_us()), " if the study link breaks again"],
            ["Hi ", P(unlisted_name(), "context"), ", thanks for the reminder about the survey!"],
            [
                "my email changed, it's now ",
                T("EMAIL", g.email()),
                " (the old one was ",
                T("EMAIL", email),
                ")",
            ],
            ["Thanks for the tips on sleep.\nBest,\n", P(first, "known")],
            [
                "the shipping label says ",
                T("ADDRESS", g.address_en()),
                ", Springfield, IL ",
                T("POSTAL_CODE", g.zip_en()),
                " but I moved",
            ],
            [
                "I was born on ",
                T("DATE_OF_BIRTH", g.dob("en")),
                " so I'm turning 30 soon, kind of freaking out",
            ],
            [
                "my DOB is ",
                T("DATE_OF_BIRTH", g.dob("en")),
                ", does the horoscope thing work for that",
            ],
            [
                "Can you tell if this is a scam? They asked for my SSN ",
                T("SSN", g.ssn()),
                " and my card ",
                T("CREDIT_CARD", g.card()),
            ],
            ["I paid with ", T("CREDIT_CARD", g.card()), " and was charged twice, $45.99 each"],
            ["My router is at ", T("IP", g.ip()), " and I can't get to the admin page"],
            [
                "Why does my server log show ",
                T("IP", g.ip()),
                " trying to connect at 14:30 every day?",
            ],
            ["follow my running page ", T("HANDLE", g.handle()), " lol, 3 marathons this year"],
            ["my portfolio is ", T("URL", g.url()), " — be honest, is it good?"],
            ["Send the refund to ", T("IBAN", g.iban()), " please, it's my EU account"],
            [
                "we moved to ",
                T("ADDRESS", g.address_en()),
                " last month and the neighbors are loud",
            ],
            [
                "My therapist, Dr. ",
                P(rng.choice(LISTED_LAST_EN + UNLISTED_LAST)),
                ", suggested journaling",
            ],
            ["My name is ", P(unlisted_name(), "context"), " and I'm a grad student."],
            ["call me ", P(rng.choice(UNLISTED_FIRST), "context"), ", everyone does"],
            [
                "I talked to ",
                P(listed_name("en"), "listed"),
                " and ",
                P(listed_name("en"), "listed"),
                " about the study, they want to join",
            ],
            [
                "Hello! This is ",
                P(first, "known"),
                " from the Tuesday group, my number is ",
                T("PHONE", g.phone("en")),
            ],
            [
                "our office moved to ",
                T("ADDRESS", g.address_en()),
                ", London ",
                T("POSTAL_CODE", g.uk_postcode()),
            ],
            [
                "my postcode is ",
                T("POSTAL_CODE", g.uk_postcode()),
                " if you need it for the voucher",
            ],
            [
                "my birthday is ",
                T("DATE_OF_BIRTH", g.dob("en")),
                " and my mom ",
                P(listed_name("en"), "listed"),
                " always forgets",
            ],
            [
                "you can reach me at ",
                T("EMAIL", local + "@example.com"),
                " or just use ",
                P(local, "known"),
            ],
            ["our old IP ", T("IP", g.ip()), " got blocked, now using ", T("IP", g.ip())],
            ["remember my friend ", P(listed_name("en"), "listed"), "? she got the job!!"],
            [
                "ask ",
                P(unlisted_name(), "context"),
                " from accounting, she's ",
                T("HANDLE", g.handle()),
                " on slack",
            ],
        ]
        pt = [
            [
                "oi, aqui é o ",
                P(kv(), "known"),
                " de novo, pode me ajudar com um email pro meu chefe?",
            ],
            ["Meu usuário no painel é ", P(pid, "known"), ", caso precise."],
            [
                "Escreve uma carta de apresentação e assina como ",
                P(name, "known"),
                ", ",
                T("EMAIL", email),
                ", tel ",
                T("PHONE", g.phone("pt")),
            ],
            [
                "Sou a ",
                P(first, "known"),
                " e uso o chat principalmente de madrugada quando não consigo dormir.",
            ],
            [
                "meu chefe ",
                P(listed_name("pt"), "listed"),
                " marcou reunião às 7h de novo, to exausta",
            ],
            [
                "minha irmã ",
                P(unlisted_name(), "context"),
                " acha que eu uso o ChatGPT demais kkkk",
            ],
            [
                "Olha meu currículo: ",
                P(name.upper(), "known"),
                " - ",
                T("EMAIL", email),
                " - ",
                T("URL", g.url()),
            ],
            [
                "briguei com o ",
                P(listed_name("pt", full=True), "listed"),
                " ontem e não sei como pedir desculpas",
            ],
            ["me chama no zap ", T("PHONE", g.phone_br()), " se o link da pesquisa der erro"],
            ["Oi ", P(unlisted_name(), "context"), ", obrigada pelo lembrete do questionário!"],
            [
                "troquei de email, agora é ",
                T("EMAIL", g.email()),
                " (o antigo era ",
                T("EMAIL", email),
                ")",
            ],
            ["Valeu pelas dicas de sono.\nAbraços,\n", P(first, "known")],
            [
                "meu endereço é ",
                T("ADDRESS", g.address_pt()),
                ", CEP ",
                T("POSTAL_CODE", g.cep()),
                ", São Paulo - SP",
            ],
            ["nasci em ", T("DATE_OF_BIRTH", g.dob("pt")), " e to quase fazendo 30, socorro"],
            ["data de nascimento: ", T("DATE_OF_BIRTH", g.dob("pt")), ", precisa pra inscrição?"],
            [
                "Isso é golpe? Pediram meu CPF ",
                T("CPF", g.cpf()),
                " e o número do cartão ",
                T("CREDIT_CARD", g.card()),
            ],
            ["paguei com o cartão ", T("CREDIT_CARD", g.card()), " e cobraram duas vezes R$ 89,90"],
            [
                "meu cpf é ",
                T("CPF", g.cpf(formatted=False)),
                " pode confirmar se tá certo o cadastro?",
            ],
            ["o IP do meu modem é ", T("IP", g.ip()), " e não consigo entrar na configuração"],
            ["me segue lá ", T("HANDLE", g.handle()), ", posto foto de comida todo dia"],
            ["meu site é ", T("URL", g.url()), " o que você acha do layout?"],
            ["manda o reembolso pra ", T("IBAN", g.iban()), " por favor"],
            [
                "mudamos pra ",
                T("ADDRESS", g.address_pt()),
                " mês passado e os vizinhos são barulhentos",
            ],
            [
                "Minha psicóloga, Dra. ",
                P(rng.choice(LISTED_LAST_PT + UNLISTED_LAST)),
                ", sugeriu escrever um diário",
            ],
            ["Meu nome é ", P(unlisted_name(), "context"), " e sou estudante de mestrado."],
            ["pode me chamar de ", P(rng.choice(UNLISTED_FIRST), "context"), ", todo mundo chama"],
            [
                "conversei com a ",
                P(listed_name("pt"), "listed"),
                " e com o ",
                P(listed_name("pt"), "listed"),
                " sobre a pesquisa",
            ],
            [
                "Olá! Aqui é a ",
                P(first, "known"),
                " do grupo de terça, meu número é ",
                T("PHONE", g.phone("pt")),
            ],
            ["entrega no CEP ", T("POSTAL_CODE", g.cep()), " por favor, é apartamento"],
            [
                "meu aniversário é dia ",
                T("DATE_OF_BIRTH", g.dob("pt")),
                " e minha mãe ",
                P(listed_name("pt"), "listed"),
                " sempre esquece",
            ],
            [
                "pode mandar pra ",
                T("EMAIL", local + "@empresa.com.br"),
                " ou me marcar como ",
                P(local, "known"),
            ],
            [
                "lembra da minha amiga ",
                P(listed_name("pt"), "listed"),
                "? ela passou na entrevista!!",
            ],
            [
                "fala com a ",
                P(unlisted_name(), "context"),
                " do RH, ela é ",
                T("HANDLE", g.handle()),
                " no insta",
            ],
            ["o ", P(first_plain, "known"), " aqui, esqueci minha senha do app da pesquisa"],
            ["Moro na ", T("ADDRESS", g.address_pt()), ", perto do metrô"],
        ]
        pool = en if lang == "en" else pt
        other = pt if lang == "en" else en
        chosen = rng.sample(pool, k=min(len(pool), 24)) + rng.sample(other, k=6)
        for pieces in chosen:
            out.append(
                (lang if pieces in pool else ("pt" if lang == "en" else "en"), index, pieces)
            )
    return out


def hard_negatives(rng: random.Random) -> list[tuple[str, list]]:
    g = Gen(rng)
    en = [
        "Will this work if I switch from GPT-4o to Claude 3.5 Sonnet?",
        "May I ask why Llama 3 gives shorter answers than Gemini 1.5 Pro?",
        "I started Sertraline 50mg in March and my doctor says to wait 6 weeks.",
        "Grace period ends on Friday, so I need to pay the $45.99 before then.",
        "The meeting is at 14:30, or 3pm your time, on 12/05/2024.",
        "We upgraded to version 2.0.1 and now 15% of requests fail.",
        "I spent R$ 1.234,56 on groceries this month, is that a lot for 2 people?",
        "Mark my words, 2024 will be better. I ordered 3 books and 12 notebooks.",
        "Claude told me to try the 4-7-8 breathing technique.",
        "Hi Claude, can you summarize this article about Paris?",
        "I'm Brazilian but I live in Portugal now.",
        "I'm tired. I'm so tired of everything today.",
        "Thanks, ChatGPT! That helped a lot.",
        "Order #48213977 still hasn't arrived and it's been 10 days.",
        "My score went from 680 to 742 after paying the card.",
        "The appointment is on March 3 at 10:15 in room 204.",
        "Lexapro made me sleepy, Prozac didn't, Xanax only as needed.",
        "It's 2023 and I still can't fold a fitted sheet.",
        "Sunday I slept 9 hours, Monday only 4.5 hours.",
        "Python 3.11 is faster than 3.10 by about 25%.",
        "Apple Watch says my resting heart rate is 62 bpm.",
        "Happy New Year! Here's to 2025.",
        "Great question. First, open Settings, then go to Privacy.",
        "Hope you're doing well. Faith in humanity restored today.",
        "The report is due June 30, and the deadline for the grant is July 15, 2024.",
        "Our team of 12 handled 1,500 tickets in Q3.",
        "I drove 45 miles down the road to get there.",
        "The score was 3-1, and the match started at 8:45 pm.",
        "Copilot keeps suggesting the wrong function in VS Code 1.89.",
        "Black Friday deals: 40% off, prices from $19.99.",
        "The file is main.py and the model weights are in model.pt.",
        "I asked Siri and Alexa, neither knew the answer.",
        "Costs went up 3.5% in 2022 according to the report.",
        "He ran 5 km in 24:13, a new personal best.",
        "New York was amazing, we saw the Statue of Liberty.",
        "Christmas Eve is on a Tuesday this year.",
        "My password manager shows 143 saved logins.",
        "Temperatures hit 38.5 degrees yesterday.",
        "Invoice 2023-0045 was paid on 02/03/2023.",
        "I work 9 to 5 and commute 1h20 each way.",
    ]
    pt = [
        "Vale a pena trocar o GPT-4o pelo Claude 3.5 Sonnet?",
        "Comecei a tomar Rivotril 0,5mg e Sertralina 50mg em março.",
        "Paguei R$ 1.234,56 no mercado esse mês, é muito pra 2 pessoas?",
        "A reunião é às 14:30 do dia 12/05, sala 3.",
        "Atualizei pro 2.0.1 e agora 15% das requisições falham.",
        "Rosa é minha cor favorita desde 2010.",
        "Oi Claude, pode resumir esse texto sobre Lisboa?",
        "Sou brasileira mas moro em Portugal faz 3 anos.",
        "Obrigado, Gemini! Ajudou muito.",
        "Pedido número 48213977 ainda não chegou, já são 10 dias.",
        "Santos venceu por 2 a 1 ontem à noite.",
        "Costa Rica está nos meus planos pra 2025.",
        "Domingo dormi 9 horas, segunda só 4 horas e meia.",
        "Vitória foi a palavra do dia: passei na prova com nota 9,5.",
        "O boleto de R$ 350,00 vence dia 10.",
        "Minha consulta é dia 3 de março às 10h15.",
        "Fluoxetina me deixou sem fome, Venvanse também.",
        "Campos alagados por causa da chuva, 120 mm em 2 dias.",
        "Natal em família, 15 pessoas na mesa.",
        "Rua sem saída, 3 carros parados e nenhuma vaga.",
        "O protocolo 2023-998877 foi aberto ontem.",
        "Tenho 34 anos e trabalho há 12 na mesma empresa.",
        "Lima é a capital do Peru, certo?",
        "A Apple lançou o iPhone 15 por R$ 7.299.",
        "Li 3 livros esse ano, todos de ficção científica.",
        "Bom dia! Hoje acordei às 6h30 e corri 5 km.",
        "Fiquei em 2º lugar entre 150 participantes.",
        "A temperatura caiu pra 12 graus em São Paulo.",
        "Meu aniversário de casamento é 20/11, alguma ideia de presente?",
        "O Llama 3 roda no meu notebook com 16 GB de RAM.",
    ]
    out = [("en", [t]) for t in en] + [("pt", [t]) for t in pt]
    # Templated negatives: numbers that look a little like identifiers.
    for _ in range(20):
        out.append(
            (
                "en",
                [
                    f"My monthly budget is ${rng.randrange(1000, 9999)}.{rng.randrange(10, 99)} "
                    f"and I saved {rng.randrange(2, 40)}% so far."
                ],
            )
        )
        out.append(
            (
                "pt",
                [
                    f"Gastei R$ {rng.randrange(1, 99)}.{rng.randrange(100, 999)},"
                    f"{rng.randrange(10, 99)} em {rng.randrange(2, 12)} parcelas, "
                    f"pedido {rng.randrange(10000000, 99999999)}."
                ],
            )
        )
    del g
    return out


# Sentences for identifier-free messages: most of a real study chat (participants' questions
# and the assistant's longer replies) contains no identifier at all. They also test precision
# on ordinary prose: sentence-initial capitals, times, amounts, counts, model names.
FILLER_EN = [
    "I slept badly again last night, maybe five hours in total.",
    "Can you suggest a short breathing exercise I can do before a meeting?",
    "Honestly the app has been helpful, but I use it more at night than I should.",
    "Work has been stressful since the reorganisation in September.",
    "Here are a few ideas that may help you wind down in the evening.",
    "First, try keeping a regular bedtime, even on weekends.",
    "Second, avoid screens for about 30 minutes before you go to sleep.",
    "It is completely normal to feel anxious before a big presentation.",
    "Would it help to break the task into smaller steps?",
    "I asked the assistant to summarise the article and it did a decent job.",
    "My mood has been better this week, about a 7 out of 10.",
    "Sometimes I just want someone to talk to, and this is easier than calling anyone.",
    "Writing down three things that went well today can improve mood over time.",
    "The exam is on Thursday and I have two chapters left to review.",
    "I went for a 20 minute walk at lunch and it helped a little.",
    "Do you think it is healthy to talk to a chatbot every day?",
    "That sounds really hard. It makes sense that you feel tired.",
    "If you ever feel unsafe, please contact local emergency services or a crisis line.",
    "Could you rewrite this paragraph so it sounds more professional?",
    "I spend around 2 hours a day on my phone, mostly on social media.",
    "Yesterday was rough, but today I managed to cook dinner and tidy up.",
    "Try the 5-4-3-2-1 grounding technique when you notice the panic rising.",
    "Thanks, that list is useful. I will try the first two tonight.",
    "Caffeine after 3pm seems to keep me awake, so I switched to decaf.",
    "Please explain the difference between stress and burnout in simple terms.",
]
FILLER_PT = [
    "Dormi mal de novo essa noite, umas cinco horas no total.",
    "Você pode sugerir um exercício de respiração rápido antes de uma reunião?",
    "Sinceramente o app tem ajudado, mas uso mais de madrugada do que deveria.",
    "O trabalho está estressante desde a reestruturação em setembro.",
    "Aqui vão algumas ideias que podem ajudar a relaxar à noite.",
    "Primeiro, tente manter um horário regular para dormir, mesmo no fim de semana.",
    "Segundo, evite telas por uns 30 minutos antes de deitar.",
    "É completamente normal sentir ansiedade antes de uma apresentação importante.",
    "Ajudaria dividir a tarefa em partes menores?",
    "Pedi pro assistente resumir o artigo e ele fez um bom trabalho.",
    "Meu humor melhorou essa semana, tipo um 7 de 10.",
    "Às vezes só quero alguém pra conversar, e aqui é mais fácil do que ligar pra alguém.",
    "Anotar três coisas boas do dia pode melhorar o humor com o tempo.",
    "A prova é na quinta e ainda faltam dois capítulos pra revisar.",
    "Fiz uma caminhada de 20 minutos no almoço e ajudou um pouco.",
    "Você acha saudável conversar com um chatbot todo dia?",
    "Isso parece muito difícil. Faz sentido você estar cansada.",
    "Se você se sentir em perigo, procure o CVV pelo 188 ou um serviço de emergência.",
    "Pode reescrever esse parágrafo pra ficar mais profissional?",
    "Passo umas 2 horas por dia no celular, mais em rede social.",
    "Ontem foi pesado, mas hoje consegui cozinhar e arrumar a casa.",
    "Quando sentir a crise chegando, tente a técnica 5-4-3-2-1 de aterramento.",
    "Valeu, essa lista é útil. Vou testar as duas primeiras hoje.",
    "Café depois das 15h me tira o sono, então troquei por descafeinado.",
    "Explica a diferença entre estresse e burnout de um jeito simples?",
]


def filler_messages(rng: random.Random, count: int) -> list[tuple[str, list]]:
    out = []
    for _ in range(count):
        lang = rng.choice(["en", "pt"])
        pool = FILLER_EN if lang == "en" else FILLER_PT
        # Participants write one or two sentences; assistant replies run longer.
        size = rng.choice([1, 1, 2, 2, 3, 5, 8])
        out.append((lang, [" ".join(rng.sample(pool, k=size))]))
    return out


def main() -> None:
    rng = random.Random(SEED)
    rows = []
    for number, (lang, participant, pieces) in enumerate(build_messages(rng), start=1):
        text, spans = render(pieces)
        name, email, pid, _ = PARTICIPANTS[participant]
        rows.append(
            {
                "id": f"m{number:04d}",
                "lang": lang,
                "participant": f"p{participant + 1:02d}",
                "text": text,
                "known": {"names": [name], "emails": [email], "ids": [pid]},
                "spans": spans,
            }
        )
    for number, (lang, pieces) in enumerate(hard_negatives(rng), start=1):
        text, spans = render(pieces)
        rows.append(
            {
                "id": f"n{number:04d}",
                "lang": lang,
                "participant": "anon",
                "text": text,
                "spans": spans,
            }
        )
    for number, (lang, pieces) in enumerate(filler_messages(rng, 400), start=1):
        text, spans = render(pieces)
        participant = PARTICIPANTS[number % len(PARTICIPANTS)]
        rows.append(
            {
                "id": f"f{number:04d}",
                "lang": lang,
                "participant": f"p{number % len(PARTICIPANTS) + 1:02d}",
                "text": text,
                "known": {
                    "names": [participant[0]],
                    "emails": [participant[1]],
                    "ids": [participant[2]],
                },
                "spans": spans,
            }
        )
    for row in rows:
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
