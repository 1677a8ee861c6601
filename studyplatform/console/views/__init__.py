"""Console pages: design (study list, designer, versions, previews, launch), monitor (dashboard,
participants, safety, team, analyses, exports) and invitation (where an emailed team invitation
leads). The researcher account pages (sign-up, email verification, password reset) are in
studyplatform/accounts."""
