"""Protocol designer helpers, one module per job (plain data in and out; no database, no request):

- fields: which form field edits which protocol field, and small value conversions;
- text_lines: the one-item-per-line formats of consent checkboxes and safety flag items;
- sections: protocol document <-> section form data;
- errors: which section, row and field shows a validation error (from its structured path);
- calendar_preview: survey occurrences for an example participant.

The launch checklist is a domain rule: it lives in studyplatform/studies/launch.py.
"""
