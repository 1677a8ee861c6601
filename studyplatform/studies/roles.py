"""Per-study roles and what each may do. One table, used by every view and API endpoint.

Platform admins (superusers) may do everything. Participants are not Django users and never
reach researcher pages.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    DESIGNER = "designer"
    MONITOR = "monitor"
    ANALYST = "analyst"
    SAFETY_REVIEWER = "safety_reviewer"


class Perm(StrEnum):
    VIEW_STUDY = "view_study"  # see the study, its consent documents and members
    # The protocol document and its versions: arms (models, system prompts, parameters). Not
    # allocation itself, but a monitor is blind to arms altogether (see ROLE_DESCRIPTIONS).
    VIEW_PROTOCOL = "view_protocol"
    EDIT_PROTOCOL = "edit_protocol"  # change the protocol (creates versions), consent, arms
    MANAGE_LIFECYCLE = "manage_lifecycle"  # pilot, launch, close
    MANAGE_MEMBERS = "manage_members"  # invite/remove members, change roles
    VIEW_PARTICIPANTS = "view_participants"  # pseudonymous participant list, compliance
    VIEW_ALLOCATION = "view_allocation"  # which arm each participant is in (unblinded)
    MANAGE_PARTICIPANTS = "manage_participants"  # pilot testers, withdrawal on request
    VIEW_IDENTITY = "view_identity"  # the identity vault (audited)
    READ_CHAT = "read_chat"  # message content (pseudonymous, audited)
    REVIEW_SAFETY = "review_safety"  # safety alerts with excerpts; acknowledge/resolve
    RUN_ANALYSIS = "run_analysis"
    EXPORT_DATA = "export_data"  # create and download anonymized exports


ROLE_PERMISSIONS: dict[Role, frozenset[Perm]] = {
    Role.OWNER: frozenset(Perm),
    Role.DESIGNER: frozenset(
        {
            Perm.VIEW_STUDY,
            Perm.VIEW_PROTOCOL,
            Perm.EDIT_PROTOCOL,
            Perm.VIEW_PARTICIPANTS,
            Perm.MANAGE_PARTICIPANTS,
        }
    ),
    Role.MONITOR: frozenset({Perm.VIEW_STUDY, Perm.VIEW_PARTICIPANTS}),
    Role.ANALYST: frozenset(
        {
            Perm.VIEW_STUDY,
            Perm.VIEW_PROTOCOL,
            Perm.VIEW_PARTICIPANTS,
            Perm.VIEW_ALLOCATION,
            Perm.READ_CHAT,
            Perm.RUN_ANALYSIS,
            Perm.EXPORT_DATA,
        }
    ),
    Role.SAFETY_REVIEWER: frozenset(
        {
            Perm.VIEW_STUDY,
            Perm.VIEW_PROTOCOL,
            Perm.VIEW_PARTICIPANTS,
            Perm.READ_CHAT,
            Perm.REVIEW_SAFETY,
            Perm.VIEW_IDENTITY,
        }
    ),
}

ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.OWNER: "Everything, including team membership, launching and closing the study.",
    Role.DESIGNER: "Edits the protocol (arms, models, consent, screener, surveys, schedule) and "
    "manages pilot testers.",
    Role.MONITOR: "Watches enrollment and compliance; never sees arms (the protocol, its "
    "versions, models, system prompts) or message content.",
    Role.ANALYST: "Runs analyses and creates exports; sees allocation and pseudonymous chats.",
    Role.SAFETY_REVIEWER: "Reviews safety alerts (with excerpts), contacts participants at risk.",
}


def role_allows(role: str, perm: Perm) -> bool:
    try:
        return perm in ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return False
