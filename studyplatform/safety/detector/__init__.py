"""Safety screening of participant chat messages: the crisis-language detector.

Pure Python (standard library only, no Django): ``detect(text, language)`` returns the most
severe :class:`Detection` or None. It is one layer beside human review and the crisis resources
shown to participants, not a clinical instrument. See ``docs/safety_detector.md``.
"""

from .detector import (
    LANGUAGES,
    SEVERITY_RANK,
    Detection,
    Detector,
    LexiconError,
    detect,
    evaluate,
    normalize,
)

__all__ = [
    "LANGUAGES",
    "SEVERITY_RANK",
    "Detection",
    "Detector",
    "LexiconError",
    "detect",
    "evaluate",
    "normalize",
]
