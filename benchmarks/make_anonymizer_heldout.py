"""Generate the small held-out table for the anonymizer benchmark.

    python benchmarks/make_anonymizer_heldout.py > benchmarks/data/anonymizer_heldout.jsonl
    .venv/bin/python benchmarks/anonymizer.py --corpus benchmarks/data/anonymizer_heldout.jsonl

Unlike the main corpus (templates), these messages were written one by one, in styles the
templates do not use (typos, run-on chat, unusual formats, identifiers mid-sentence), and were
not used to tune the detectors. Gold spans are marked inline as {TYPE|value}; the script
strips the markup and records the offsets. `known` is given per message where the message
mentions the participant.
"""

from __future__ import annotations

import json
import re
import sys

MARK = re.compile(r"\{([A-Z_]+)\|([^{}]*)\}")

KNOWN_CLARA = {
    "names": ["Clara Menezes Bittencourt"],
    "emails": ["clarinha.mb@gmail.com"],
    "ids": ["PB-7781"],
}
KNOWN_TOM = {"names": ["Thomas O'Reilly"], "emails": ["t.oreilly@example.ie"], "ids": ["tomreilly"]}

MESSAGES: list[tuple[str, dict | None]] = [
    ("ola, {PERSON|clara} aqui. to usando o app desde segunda", KNOWN_CLARA),
    ("vc pode revisar meu email? assinatura: {PERSON|Clara M. Bittencourt}", KNOWN_CLARA),
    ("meu id no painel é {PERSON|PB-7781}, deu erro no questionário", KNOWN_CLARA),
    ("escreve pra {EMAIL|clarinha.mb@gmail.com} se precisar", KNOWN_CLARA),
    ("hey its {PERSON|tom} again, couldnt sleep", KNOWN_TOM),
    ("{PERSON|O'Reilly} is my surname, people always misspell it", KNOWN_TOM),
    ("my username is {PERSON|tomreilly} on the study portal", KNOWN_TOM),
    ("i told my flatmate {PERSON|Siddharth} about the study and he laughed", None),
    ("a {PERSON|Dona Cida} do 302 reclamou do barulho de novo", None),
    ("falei com o {PERSON|Genivaldo} do financeiro sobre o reembolso", None),
    ("Ontem a {PERSON|Thaís} me ligou chorando", None),
    ("Spoke to {PERSON|Mrs. Okonjo} about the rent, she was kind about it", None),
    ("ask {PERSON|Bartek} if he can cover my shift", None),
    ("{PERSON|Ingrid} and {PERSON|Luca} are coming for dinner on saturday", None),
    ("me chamo {PERSON|Valdirene Cordeiro}, tenho 52 anos", None),
    ("hello, this is {PERSON|Akosua} from the evening cohort", None),
    ("abs,\n{PERSON|Renan}", None),
    ("cheers {PERSON|Moira}", None),
    ("zap: {PHONE|(81) 9 9123-4567}", None),
    ("my cell is {PHONE|312.555.0147}, text anytime after 6", None),
    ("liga no {PHONE|+55 31 3344-5566} que é o fixo", None),
    ("whatsapp {PHONE|+351 936 112 480} (estou em Lisboa agora)", None),
    ("reach me on {PHONE|+1-646-555-0190} please", None),
    ("site novo: {URL|https://clarabittencourt.art/portfolio}", None),
    ("saw it on {URL|reddit.com/r/insomnia} last week", None),
    ("meu blog {URL|www.diariodasemana.blog.br}!!", None),
    ("my vpn shows {IP|203.0.113.77} as my address", None),
    ("ipv6 do roteador: {IP|2804:7f0:b901::1a}", None),
    ("card number {CREDIT_CARD|4539-1488-0343-6467}, is it safe to share here?", None),
    ("cartão {CREDIT_CARD|5162 9282 1417 8829} venceu", None),
    ("SSN {SSN|219-09-9999} (fake one from the form example)", None),
    ("cpf {CPF|390.533.447-05} e RG 12.345.678-9", None),
    ("meu cpf: {CPF|39053344705}", None),
    ("transfer to {IBAN|GB33 BUKB 2020 1555 5555 55}", None),
    ("IBAN PT: {IBAN|PT50 0002 0123 1234 5678 9015 4}", None),
    ("moro na {ADDRESS|R. Bela Cintra, 1200}, {POSTAL_CODE|01415-000}", None),
    ("mail it to {ADDRESS|88 Colin P Kelly Jr St}, San Francisco, CA {POSTAL_CODE|94107}", None),
    ("fica na {ADDRESS|Avenida Afonso Pena 1500}, bairro Centro", None),
    ("we're at {ADDRESS|10 Downing Street}, London {POSTAL_CODE|SW1A 2AA}", None),
    ("nasci dia {DATE_OF_BIRTH|3 de outubro de 1979}", None),
    ("b-day is {DATE_OF_BIRTH|Feb 29} lol, leap year baby", None),
    ("data nasc. {DATE_OF_BIRTH|07/11/1992}", None),
    ("insta {HANDLE|@clara.bitt}, me segue", None),
    ("I'm {HANDLE|@tom_oreilly_} on twitter", None),
    # negatives
    ("GPT-4o-mini and Claude Haiku both gave me the same advice", None),
    ("Tomei Escitalopram 10mg por 6 meses, depois Bupropiona", None),
    ("Monday was awful, Tuesday better. June is always hard for me.", None),
    ("paguei R$ 2.350,00 de aluguel e 15% de condomínio", None),
    ("the update to 3.2.14 broke the login, error 502", None),
    ("Salvador é lindo, fui em 2019 com a família", None),
    ("Ok. Dear diary, today was fine.", None),
    ("Rio de Janeiro tem 6,7 milhões de habitantes", None),
    ("my appointment is 11/14 at 3:30pm", None),
    ("Order 1Z999AA10123456784 shipped via UPS", None),
    ("A aula começa às 19h e termina 22h30, sala 105.", None),
    ("I'm Catholic but not very religious", None),
    ("Grace and mercy, that's what my grandma used to say", None),
    # A relative's birthday is a Safe Harbor identifier too (HIPAA: "of the individual or of
    # relatives"), so this one is a positive.
    ("Lembrei do aniversário da minha mãe, {DATE_OF_BIRTH|12/08}, tenho que comprar algo", None),
]


def parse(marked: str) -> tuple[str, list[dict]]:
    text, spans, position = "", [], 0
    for match in MARK.finditer(marked):
        text += marked[position : match.start()]
        start = len(text)
        text += match.group(2)
        kind = match.group(1)
        spans.append({"start": start, "end": len(text), "type": kind})
        position = match.end()
    text += marked[position:]
    return text, spans


def main() -> None:
    for number, (marked, known) in enumerate(MESSAGES, start=1):
        text, spans = parse(marked)
        row = {
            "id": f"h{number:03d}",
            "lang": "pt" if re.search(r"[ãçéáõ]|\b(?:meu|você|vc|não)\b", text) else "en",
            "participant": "clara"
            if known is KNOWN_CLARA
            else ("tom" if known is KNOWN_TOM else f"h{number:03d}"),
            "text": text,
            "spans": spans,
        }
        if known:
            row["known"] = known
            for span in spans:
                if span["type"] == "PERSON":
                    span["kind"] = "known"
        else:
            for span in spans:
                if span["type"] == "PERSON":
                    span["kind"] = "context"
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
