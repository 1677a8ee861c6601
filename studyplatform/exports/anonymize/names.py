"""Personal names that are not the participant's own (those are in `known.py`).

Two detectors:

- `detect_cued_names`: a name introduced by a cue phrase — "my name is …", "meu nome é …",
  "I'm …", "sou a …", a greeting at the start of a line ("Hi …", "Oi …"), a sign-off
  ("Thanks, …", "Abraços, …") or a relationship ("my sister …", "minha amiga …"). How much the
  following word must look like a name depends on the cue: after "my name is" almost any
  capitalised word (or a listed name in lower case) is taken; after "I'm" the word must be a
  listed name or a capitalised word that is neither a common word ("I'm Tired") nor shaped
  like a verb or adjective ("I'm Getting").
- `detect_listed_names`: capitalised words, judged with the shipped lists. A listed first
  name or surname is a name, except that one which is also a common word ("Will", "May",
  "Costa") needs another name next to it, and a lone surname opening a sentence is ignored. A
  capitalised word that is not listed is a name only after a title ("Dr. Zanella", "Dona
  Cida"), after an article or verb that introduces people in the middle of a sentence ("com
  a Aurelina", "ask Anselmo"), or next to a listed name ("Priya Johnson"). Words from
  `not_names.txt` (GPT, Claude, Sertraline, Monday, Paris…) are never names here.

Speed matters (exports run over millions of messages), so the only regex passes over a whole
text start with a character class (which the `re` engine skips through quickly); cue phrases
are located with `str.find` on the lower-cased text.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .folding import fold, trie_pattern
from .lexicon import Lexicon, lexicon
from .scan import lower_aligned
from .spans import PERSON, Span


def _letters(upper: bool) -> str:
    # Latin-1 Supplement and Latin Extended-A letters of one case, for character classes;
    # generated so that e.g. "Ł" and "Ś" are not forgotten.
    return "".join(
        chr(code)
        for code in range(0x00C0, 0x0180)
        if chr(code).isalpha() and (chr(code).isupper() if upper else chr(code).islower())
    )


_UP = "A-Z" + _letters(True)
_LOW = "a-z" + _letters(False)

# A capitalised word: "Maria", "Ana-Clara", "O'Brien", "McDonald". The possessive "'s" is not
# part of it ("Maria's" -> "Maria"). Words glued to a dot, slash, @ or # belong to file names,
# URLs or handles. The pattern starts with the capital itself (the boundary check is a
# lookbehind placed after it) so the regex engine can skip lower-case text quickly.
_CAP_WORD = re.compile(
    rf"[{_UP}](?<![\w@#/.\-'’][{_UP}])"
    rf"(?:'[{_UP}][{_LOW}]+|(?<=M)a?c[{_UP}][{_LOW}]+|[{_LOW}]+(?:['’\-](?!s\b)[{_UP}]?[{_LOW}]+)*)"
    rf"(?![\w@])"
)
# Any word (after a strong cue a name may be typed in lower case or capitals).
_ANY_WORD = re.compile(r"[^\W\d_]+(?:['’\-](?!s\b)[^\W\d_]+)*")
# Between the parts of one name: a space, or a particle ("Maria da Silva").
_NAME_GAP = re.compile(r" (?:(?:d[aeiou]s?|del|della|van|von|der|le|la) )?")

_SENTENCE_END_CHARS = frozenset('.!?:;\n\r"“”(*•>-–—[')

# A place starts after these: "São Paulo", "Santa Catarina", "San Diego", "St. Louis".
_SAINTS = frozenset({"sao", "santo", "santa", "san", "saint", "st", "sta"})
# Titles before a name. "Seu"/"Dona"/"Tia" are also "your"/"owner"/"aunt": after them only a
# listed name is taken.
_TITLES = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "mx",
        "miss",
        "dr",
        "dra",
        "prof",
        "profa",
        "sr",
        "sra",
        "srta",
        "sir",
        "dom",
    }
)
_FAMILIAR_TITLES = frozenset({"dona", "seu", "tia", "tio", "vo", "aunt", "uncle"})
# Words that, right before a capitalised word in mid-sentence, usually introduce a person.
_PERSON_INTRODUCERS = frozenset(
    [
        "a",
        "o",
        "com",
        "pra",
        "para",
        "pro",
        "ask",
        "asked",
        "tell",
        "told",
        "with",
        "met",
        "meet",
        "called",
        "texted",
        "emailed",
        "invited",
        "thank",
        "thanked",
        "visit",
        "visited",
        "miss",
        "hug",
    ]
)

# Capitalised tokens after "I'm"/"sou" that are adjectives even though they are also names.
_WEAK_CUE_REJECT = frozenset(
    {
        "frank",
        "rich",
        "christian",
        "young",
        "noble",
        "royal",
        "sunny",
        "sandy",
        "single",
        "free",
        "grace",
        "joy",
        "hope",
        "faith",
        "will",
        "may",
    }
)
# Endings of verbs and adjectives ("I'm Getting", "sou Formado"): an unknown capitalised word
# with one of these after a weak cue is not taken as a name.
_NON_NAME_SUFFIX = re.compile(
    r"(?:ing|ed|ly|ous|ful|ive|able|ible|ish|less|ness|ment|ado|ada|ido|ida|ando|endo|indo|mente|oso|osa|vel)$"
)


def _looks_inflected(key: str) -> bool:
    """A verb/adjective ending on a word long enough for it to be one ("Getting", "Formado";
    not "Cida" or "Ted")."""
    return len(key) > 5 and _NON_NAME_SUFFIX.search(key) is not None


NAME, AMBIGUOUS, COMMON, EXCLUDED, UNKNOWN = "name", "ambiguous", "common", "excluded", "unknown"


@lru_cache(maxsize=65536)
def word_kind(key: str) -> str:
    """Classify a folded word: listed name, ambiguous name, common word, excluded or unknown."""
    lex = lexicon()
    if key in lex.not_names:
        return EXCLUDED
    if key in lex.ambiguous:
        return AMBIGUOUS
    if key in lex.names:
        return NAME
    if key in lex.common_words:
        return COMMON
    parts = re.split(r"['’\-]", key)
    if len(parts) > 1:
        # "ana-clara", "o'brien": a name if any part is one (and no part is excluded).
        kinds = {word_kind(part) for part in parts if part}
        for kind in (EXCLUDED, NAME, AMBIGUOUS):
            if kind in kinds:
                return kind
    if key.endswith("s") and key[:-1] in lex.common_words and key[:-1] not in lex.names:
        return COMMON  # plurals of common words ("Friends", "Guys")
    return UNKNOWN


def _at_sentence_start(text: str, start: int) -> bool:
    index = start - 1
    while index >= 0 and text[index] in " \t":
        index -= 1
    return index < 0 or text[index] in _SENTENCE_END_CHARS


def _previous_word(text: str, start: int) -> str:
    """The folded word just before `start`, if only spaces separate them."""
    index = start - 1
    if index < 0 or text[index] != " ":
        return ""
    end = index
    while index > 0 and text[index - 1].isalpha():
        index -= 1
    return fold(text[index:end])


# --------------------------------------------------------------------------------------------
# Listed names (and titles / introducers found on the same pass over capitalised words)
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def _token(word: str) -> tuple[str, bool, bool]:
    """(folded key, whether the word alone can never start a name: a common or excluded word
    that is not a title, whether it is an unlisted word that is not a title). One cached call
    per capitalised word of the text."""
    key = fold(word)
    kind = word_kind(key)
    title = key in _TITLES or key in _FAMILIAR_TITLES
    return key, kind in (COMMON, EXCLUDED) and not title, kind == UNKNOWN and not title


def detect_listed_names(text: str) -> list[Span]:
    """Capitalised names judged with the shipped lists and the context rules above."""
    lex = lexicon()
    spans: list[Span] = []
    run: list[tuple[int, int, str]] = []
    # `run_inert`: the run cannot hold a name. `run_lone`: the run is one unlisted word, a
    # name only after a word that introduces people (see `_name_in_segment`).
    run_inert = True
    run_lone = False
    gap_start = 0  # the end of the run's last word
    token = _token
    gap = _NAME_GAP.fullmatch
    for match in _CAP_WORD.finditer(text):
        start, end = match.span()
        key, inert, lone = token(match.group())
        if run:
            if (start == gap_start + 1 and text[gap_start] == " ") or (
                start - gap_start <= 7 and gap(text, gap_start, start)
            ):
                run.append((start, end, key))
                gap_start = end
                run_inert = run_lone = False
                continue
            if not run_inert and (
                not run_lone or _previous_word(text, run[0][0]) in _PERSON_INTRODUCERS
            ):
                spans.extend(_names_in_run(text, run, lex))
        # Most capitalised words stand alone and are common words ("The", "Hoje"): a run
        # of one such word needs no further work.
        run = [(start, end, key)]
        gap_start = end
        run_inert = inert
        run_lone = lone
    if (
        run
        and not run_inert
        and (not run_lone or _previous_word(text, run[0][0]) in _PERSON_INTRODUCERS)
    ):
        spans.extend(_names_in_run(text, run, lex))
    return spans


def _names_in_run(text: str, run: list[tuple[int, int, str]], lex: Lexicon) -> list[Span]:
    kinds = [word_kind(key) for _, _, key in run]
    spans: list[Span] = []
    for index, (_, end, key) in enumerate(run):
        if key in _SAINTS and index + 1 < len(run):
            # Everything after "São"/"Santa" in this run is a place name.
            for later in range(index + 1, len(run)):
                kinds[later] = EXCLUDED
        if key in _TITLES or key in _FAMILIAR_TITLES:
            kinds[index] = EXCLUDED
            # "Dr. Silva" / "Dr Silva": the title's own run may have ended at the dot.
            after = end + 1 if text.startswith(".", end) else end
            mode = _TITLE if key in _TITLES else _FAMILIAR
            if mode == _FAMILIAR and _at_sentence_start(text, run[index][0]):
                # "Seu pedido…", "Tia, …": only a listed name makes it a title here.
                following = _ANY_WORD.match(text, after + 1)
                if following is None or word_kind(fold(following.group())) not in (NAME, AMBIGUOUS):
                    continue
            span = _name_after(text, after + 1, mode, lex) if text.startswith(" ", after) else None
            if span is not None:
                spans.append(span)
    segment: list[int] = []
    for index, kind in enumerate([*kinds, EXCLUDED]):
        if kind in (EXCLUDED, COMMON):
            if segment:
                span = _name_in_segment(text, run, kinds, segment, lex)
                if span is not None:
                    spans.append(span)
            segment = []
        else:
            segment.append(index)
    return spans


def _name_in_segment(
    text: str, run: list[tuple[int, int, str]], kinds: list[str], segment: list[int], lex: Lexicon
) -> Span | None:
    first_start = run[segment[0]][0]
    at_start = _at_sentence_start(text, first_start)
    # A leading unknown word at a sentence start is more likely an ordinary capitalised word
    # ("Finalmente Maria chegou") than a first name we do not know.
    if kinds[segment[0]] == UNKNOWN and at_start and len(segment) > 1:
        segment = segment[1:]
        first_start, at_start = run[segment[0]][0], False
    end = run[segment[-1]][1]
    anchors = [i for i in segment if kinds[i] == NAME]
    if anchors:
        if len(segment) == 1 and at_start and run[segment[0]][2] not in lex.first_names:
            return None  # a lone surname opening a sentence ("Campos alagados…")
        return Span(first_start, end, PERSON, "name_list")
    listed = [i for i in segment if kinds[i] == AMBIGUOUS]
    if (
        len(listed) >= 2
        and run[listed[0]][2] in lex.first_names
        and run[listed[-1]][2] in lex.surnames
    ):
        return Span(first_start, end, PERSON, "name_list")  # "Will Young", "Grace Hall"
    if not at_start and _previous_word(text, first_start) in _PERSON_INTRODUCERS:
        first_kind = kinds[segment[0]]
        key = run[segment[0]][2]
        if first_kind == AMBIGUOUS or (first_kind == UNKNOWN and not _looks_inflected(key)):
            return Span(first_start, end, PERSON, "name_context")
    return None


# --------------------------------------------------------------------------------------------
# Cued names
# --------------------------------------------------------------------------------------------

_STRONG, _WEAK, _GREETING, _SIGNOFF, _RELATION, _TITLE, _FAMILIAR = (
    "strong",
    "weak",
    "greeting",
    "signoff",
    "relation",
    "title",
    "familiar",
)

# (phrase, mode). Phrases are lower case; "é" phrases also appear without the accent because
# people type "meu nome e" on phone keyboards.
_CUE_PHRASES: tuple[tuple[str, str], ...] = (
    *((phrase, _STRONG) for phrase in (
        "my name is", "my name's", "my full name is", "my first name is", "my last name is",
        "my real name is", "name's", "call me", "they call me", "i go by", "my nickname is",
        "meu nome é", "meu nome e", "meu nome eh", "meu nome completo é", "meu primeiro nome é",
        "meu sobrenome é", "me chamo", "pode me chamar de", "podem me chamar de",
        "me chamam de", "me chama de", "meu apelido é",
    )),
    *((phrase, _WEAK) for phrase in (
        "i'm", "i’m", "i am", "this is", "it's", "it’s", "here is", "here's", "sou", "sou o",
        "sou a", "aqui é", "aqui é o", "aqui é a", "aqui eh", "quem fala é", "quem fala é o",
        "quem fala é a",
    )),
    *((phrase, _SIGNOFF) for phrase in (
        "thanks", "thank you", "cheers", "best", "best regards", "kind regards", "regards",
        "sincerely", "love", "xoxo", "obrigado", "obrigada", "valeu", "abraço", "abraços",
        "abraco", "abracos", "um abraço", "abs", "beijo", "beijos", "bjs", "att",
        "atenciosamente", "saudações", "até mais",
    )),
)  # fmt: skip
_GREETING_WORDS = (
    r"[ \t]*(?:hi|hey|hello|hiya|dear|good (?:morning|afternoon|evening)|oi|olá|ola|e aí|e ai|"
    r"bom dia|boa tarde|boa noite|querid[oa]|prezad[oa]|car[oa])\b[ \t]*,?[ \t]*"
)
# At the start of the text, and after each line break (a literal the engine finds fast).
_GREETING_AT_START = re.compile(_GREETING_WORDS)
_GREETING_AFTER_NEWLINE = re.compile("\n" + _GREETING_WORDS)
_RELATION_NOUNS = (
    "friend", "boyfriend", "girlfriend", "husband", "wife", "partner", "fiancé", "fiance",
    "son", "daughter", "brother", "sister", "mom", "mum", "mother", "dad", "father", "boss",
    "manager", "coworker", "co-worker", "colleague", "therapist", "psychologist",
    "psychiatrist", "doctor", "teacher", "cousin", "uncle", "aunt", "grandma", "grandmother",
    "grandpa", "grandfather", "neighbor", "neighbour", "roommate", "flatmate", "housemate",
    "classmate", "ex", "kid", "stepdad",
    "stepmom", "amigo", "amiga", "namorado", "namorada", "noivo", "noiva", "marido", "esposa",
    "esposo", "mulher", "filho", "filha", "irmão", "irmã", "irmao", "irma", "mãe", "mae", "pai",
    "chefe", "colega", "terapeuta", "psicólogo", "psicóloga", "psicologo", "psicologa",
    "psiquiatra", "médico", "médica", "medico", "medica", "professor", "professora", "primo",
    "prima", "tio", "tia", "avó", "avô", "vizinho", "vizinha", "sogro", "sogra", "cunhado",
    "cunhada", "gerente", "parceiro", "parceira", "companheiro", "companheira",
)  # fmt: skip
_POSSESSIVES = frozenset(
    {
        "my",
        "our",
        "his",
        "her",
        "their",
        "meu",
        "minha",
        "nosso",
        "nossa",
        "seu",
        "sua",
        "o",
        "a",
        "best",
        "melhor",
    }
)
_AFTER_CUE = re.compile(r"[ \t]*[:,\-–]?[ \t]*")
_AFTER_SIGNOFF = re.compile(r"[ \t]*[.!]?[ \t]*[,\-–]?[ \t]*\n?[ \t]*")
_SIGNOFF_BEFORE = frozenset(",.!?\n")


_CUE_MODES: dict[str, str] = dict(_CUE_PHRASES) | dict.fromkeys(_RELATION_NOUNS, _RELATION)
# One trie-shaped alternation over the lower-cased text; longer phrases win ("sou a" over
# "sou"). It opens with literals, so the regex engine skips to their first letters; word
# boundaries are checked in Python to keep it that way.
# The pattern opens with the character before the phrase (a space, a line break or
# punctuation): the engine then only tries the trie at those few positions. A phrase at the
# very start of the text is tried separately with `match`.
# `\s` is spelled out as the characters it matches (those for which `str.isspace()` is true):
# the engine then tests one character set per character instead of a set and a category.
_WHITESPACE = "".join(chr(code) for code in range(0x110000) if chr(code).isspace())
_CUE_SEPARATOR = "[" + re.escape(_WHITESPACE) + r"(\"“.,;:!?¡¿\-–—*]"
_CUE_AFTER_SEPARATOR = re.compile(_CUE_SEPARATOR + "(" + trie_pattern(_CUE_MODES) + r")(?!\w)")
_CUE_AT_START = re.compile("(" + trie_pattern(_CUE_MODES) + r")(?!\w)")


def detect_cued_names(text: str, lowered: str | None = None) -> list[Span]:
    """Names that follow an introduction, greeting, sign-off or relationship cue."""
    lower = lowered if lowered is not None else lower_aligned(text)
    lex = lexicon()
    spans: list[Span] = []
    first = _CUE_AT_START.match(lower)
    cues = ([first] if first else []) + list(_CUE_AFTER_SEPARATOR.finditer(lower))
    for cue in cues:
        position, end = cue.span(1)
        mode = _CUE_MODES[cue.group(1)]
        if mode == _RELATION:
            if _previous_word(lower, position) not in _POSSESSIVES:
                continue
        elif mode == _SIGNOFF and not _signoff_position(lower, position):
            continue
        after = (_AFTER_SIGNOFF if mode == _SIGNOFF else _AFTER_CUE).match(text, end).end()
        if after > end:
            span = _name_after(text, after, mode, lex)
            if span is not None:
                spans.append(span)
    first_greeting = _GREETING_AT_START.match(lower)
    greetings = [first_greeting] if first_greeting and first_greeting.end() else []
    for greeting in greetings + list(_GREETING_AFTER_NEWLINE.finditer(lower)):
        span = _name_after(text, greeting.end(), _GREETING, lex)
        if span is not None:
            spans.append(span)
    return spans


def _signoff_position(lower: str, position: int) -> bool:
    """A sign-off opens the text, a line, or follows punctuation ("ok, thanks Ana")."""
    index = position - 1
    while index >= 0 and lower[index] in " \t":
        index -= 1
    return index < 0 or lower[index] in _SIGNOFF_BEFORE


def _accept_first(word: str, key: str, kind: str, mode: str) -> bool:
    if not word[0].isupper():
        # A lower-case word is a name only if listed and not ambiguous ("meu nome é ana").
        return kind == NAME and mode not in (_TITLE, _FAMILIAR)
    if kind == COMMON:
        return False
    if mode in (_STRONG, _TITLE):
        return kind != EXCLUDED or mode == _STRONG
    if kind == EXCLUDED:
        return False
    if mode == _FAMILIAR:
        # "Dona Maria", "Seu Zé", "Dona Cida"; "Seu Pedido" at a sentence start is ruled out
        # by the caller (the familiar title must not open the sentence unless a listed name
        # follows).
        return kind in (NAME, AMBIGUOUS, UNKNOWN) and not _looks_inflected(key)
    if kind == AMBIGUOUS:
        return key not in _WEAK_CUE_REJECT
    if kind == UNKNOWN:
        return len(key) > 1 and not _looks_inflected(key)
    return True


def _name_after(text: str, position: int, mode: str, lex: Lexicon) -> Span | None:
    match = _ANY_WORD.match(text, position)
    if match is None:
        return None
    word = match.group()
    key = fold(word)
    if not _accept_first(word, key, word_kind(key), mode):
        return None
    start, end = match.span()
    lowercase_name = not word[0].isupper()
    # Extend over the rest of the full name: "Ana Paula Souza", "Maria da Silva".
    for _ in range(4):
        gap = _NAME_GAP.match(text, end)
        if gap is None or gap.end() == end:
            break
        following = _ANY_WORD.match(text, gap.end())
        if following is None:
            break
        next_word = following.group()
        next_key = fold(next_word)
        next_kind = word_kind(next_key)
        if next_word[0].isupper():
            if next_kind in (COMMON, EXCLUDED):
                break
            if next_kind == UNKNOWN and _looks_inflected(next_key):
                break
        elif not (next_kind == NAME and (lowercase_name or next_key in lex.surnames)):
            break
        end = following.end()
    return Span(start, end, PERSON, f"name_cue_{mode}")
