"""A researcher-style custom instrument dict used by several survey tests."""


def custom_definition() -> dict:
    """A custom protocol instrument using every item type, a reverse item and an attention check."""
    agree = [
        {"value": 1, "label": {"en": "Disagree", "pt-BR": "Discordo"}},
        {"value": 2, "label": {"en": "Neutral", "pt-BR": "Neutro"}},
        {"value": 3, "label": {"en": "Agree", "pt-BR": "Concordo"}},
        {"value": 4, "label": {"en": "Strongly agree", "pt-BR": "Concordo totalmente"}},
    ]
    return {
        "key": "custom_mix",
        "version": "1",
        "title": {"en": "Custom", "pt-BR": "Personalizado"},
        "languages": ["en", "pt-BR"],
        "option_sets": {"agree": agree},
        "items": [
            {"id": "q1", "type": "likert", "options": "agree", "text": {"en": "I feel fine"}},
            {"id": "q2", "type": "likert", "options": "agree", "reverse_scored": True},
            {"id": "q3", "type": "likert", "options": "agree"},
            {"id": "q4", "type": "likert", "options": "agree"},
            {
                "id": "attn",
                "type": "single_choice",
                "options": [{"value": "blue"}, {"value": "red"}],
                "attention_check": {"expected": "red"},
            },
            {"id": "hours", "type": "number", "min": 0, "max": 24, "step": 0.5},
            {"id": "stress", "type": "slider", "min": 0, "max": 100, "step": 5},
            {
                "id": "apps",
                "type": "multiple_choice",
                "options": [{"value": "chatgpt"}, {"value": "claude"}, {"value": "other"}],
                "required": False,
            },
            {"id": "comment", "type": "free_text", "max_length": 20, "required": False},
        ],
        "subscales": [{"name": "first_pair", "items": ["q1", "q2"]}],
        "scores": [
            {
                "name": "total",
                "method": "sum",
                "items": ["q1", "q2", "q3", "q4"],
                "range": {"min": 4, "max": 16},
                "missing": {"rule": "prorate", "max_missing": 1, "round": 0},
                "bands": [
                    {"label": "low", "min": 4, "max": 9},
                    {"label": "high", "min": 10, "max": 16},
                ],
            },
            {
                "name": "first_pair_mean",
                "method": "mean",
                "subscale": "first_pair",
                "range": {"min": 1, "max": 4},
                "missing": {"rule": "prorate", "max_missing": 1},
            },
            {
                "name": "stress",
                "method": "sum",
                "items": ["stress"],
                "range": {"min": 0, "max": 100},
                "missing": {"rule": "all_required"},
            },
        ],
        "flags": [
            {"name": "high_stress", "score": "stress", "op": "ge", "value": 80},
            {"name": "sleep:short", "item": "hours", "op": "lt", "value": 5},
        ],
    }
