"""The export anonymizer for classifier runs: what a judge model reads when a run sends
anonymized text.

Registered with the classifiers app from ``ExportsConfig.ready()`` (classifiers sits below
exports in the layer order, so it cannot import this). Each participant gets an Anonymizer with
the identifiers an export removes for them (names and e-mail from the identity vault, the name
they signed consent with, panel ids and their participant code), so a judge sees the same text
a dataset user would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from studyplatform.participants.models import ConsentRecord, Identity, Participant

from .anonymize import Anonymizer, KnownIdentifiers


def anonymizers_for(participant_pks: Sequence[int]) -> dict[int, Callable[[str], str]]:
    pks = list(participant_pks)
    names: dict[int, set[str]] = {pk: set() for pk in pks}
    emails: dict[int, set[str]] = {pk: set() for pk in pks}
    ids: dict[int, set[str]] = {pk: set() for pk in pks}
    for pk, code in Participant.objects.filter(pk__in=pks).values_list("pk", "code"):
        ids[pk].add(code)
    for identity in Identity.objects.filter(participant_id__in=pks):
        pk = identity.participant_id
        names[pk].add(identity.name)
        emails[pk].add(identity.email)
        ids[pk] |= {identity.panel_pid, identity.panel_study_id, identity.panel_session_id}
    # signature_name is encrypted, so empty ones are dropped here rather than in the query.
    signed = ConsentRecord.objects.filter(participant_id__in=pks)
    for record in signed.only("participant_id", "signature_name"):
        names[record.participant_id].add(record.signature_name)
    out: dict[int, Callable[[str], str]] = {}
    for pk in pks:
        anonymizer = Anonymizer(
            known=KnownIdentifiers(
                names=tuple(sorted(n for n in names[pk] if n)),
                emails=tuple(sorted(e for e in emails[pk] if e)),
                ids=tuple(sorted(i for i in ids[pk] if i)),
            )
        )
        out[pk] = lambda text, anonymizer=anonymizer: anonymizer.anonymize(text).text
    return out
