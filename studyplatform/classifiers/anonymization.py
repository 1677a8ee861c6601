"""Where a run gets the export anonymizer from, without importing the exports app.

The text anonymizer lives in the exports app, which sits above classifiers in the layer order
(tests/core/test_import_layers.py: exports will read classifier labels into datasets), so
``ExportsConfig.ready()`` registers a factory here, as surveys registers its instrument library
with the protocol validator. The factory builds, for the given participants, the same anonymizer
an export uses (each participant's known names, e-mail addresses and ids from the identity
vault, plus the detectors), so the judge sees exactly what a dataset user would see.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# participant primary keys -> {participant pk: function from raw text to anonymized text}
AnonymizerFactory = Callable[[Sequence[int]], dict[int, Callable[[str], str]]]

_factory: AnonymizerFactory | None = None


class AnonymizerMissing(RuntimeError):
    """Anonymized text was asked for and no anonymizer is installed: nothing may be sent."""


def text_anonymizer_register(factory: AnonymizerFactory) -> None:
    """Called from ``ExportsConfig.ready()`` (registering again replaces it)."""
    global _factory
    _factory = factory


def text_anonymizers(participant_pks: Sequence[int]) -> dict[int, Callable[[str], str]]:
    if _factory is None:
        raise AnonymizerMissing(
            "anonymized text was requested but the export anonymizer is not installed"
        )
    return _factory(participant_pks)
