"""Console pages: design (study list, designer, versions, previews, launch), monitor (dashboard,
participants, safety, team, analyses, exports) and account (sign-up, invitations)."""
