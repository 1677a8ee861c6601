"""Text anonymizer for chat messages and free-text answers (English and Brazilian Portuguese).

Pure Python (standard library plus python-stdnum for check digits), no Django: usable from a
task, a notebook or the command line (`python -m studyplatform.exports.anonymize`, see `cli.py`).

    from studyplatform.exports.anonymize import Anonymizer, KnownIdentifiers, detect

    anonymizer = Anonymizer(known=KnownIdentifiers(names=("José Araújo",), emails=("ja@x.com",)))
    result = anonymizer.anonymize("Sou o jose araujo, meu email é ja@x.com")
    result.text   # 'Sou o [PERSON_1], meu email é [EMAIL_1]'
    result.spans  # [Span(start=6, end=17, type='PERSON', detector='known'), ...]

    detect("call me at (415) 555-0132")  # spans only, nothing replaced

See docs/anonymizer.md for what is detected, how, and what is missed.
"""

from .anonymizer import Anonymizer, Result, anonymize, normalise_value
from .detect import detect
from .known import KnownIdentifiers
from .spans import ENTITY_TYPES, Span

__all__ = [
    "ENTITY_TYPES",
    "Anonymizer",
    "KnownIdentifiers",
    "Result",
    "Span",
    "anonymize",
    "detect",
    "normalise_value",
]
