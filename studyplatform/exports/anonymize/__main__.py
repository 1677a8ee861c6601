"""`python -m studyplatform.exports.anonymize`: see `cli.py`."""

import sys

from .cli import main

sys.exit(main())
