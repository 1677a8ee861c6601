"""Arms name a registered model endpoint instead of carrying a URL and a key variable.

Each existing arm is mapped to an endpoint: simulated arms to `simulated`; others to the endpoint
declared in the environment (MODEL_ENDPOINTS, or the OPENAI_*/ANTHROPIC_* conveniences) whose
kind and base URL match the arm's, else to the endpoint named after the arm's provider
(`openai`, `anthropic`). A mapped endpoint that is not registered simply refuses calls until the
operator registers it: an arm never again reaches an address nobody registered. Arms whose URL
matched no declared endpoint are listed on the console, so the operator knows what to register.

Protocol versions are immutable and keep their old model fields as the record of what governed
collection; the designer and the API's protocol download show them with the mapped endpoint
(studies.selectors.protocol_for_editing), so the next saved version is in the new form.
"""

import json
import sys

from django.conf import settings
from django.db import migrations, models


def _norm(url):
    return (url or "").strip().rstrip("/").lower()


def _declared():
    """[(name, kind, normalised base URL)] from the environment, as the registry reads it."""
    found = []
    for name, spec in (getattr(settings, "MODEL_ENDPOINTS", {}) or {}).items():
        if isinstance(spec, dict):
            found.append((name, spec.get("kind", ""), _norm(spec.get("base_url"))))
    declared = {name for name, _kind, _url in found}
    if "openai" not in declared and (settings.OPENAI_BASE_URL or settings.OPENAI_API_KEY):
        found.append(("openai", "openai", _norm(settings.OPENAI_BASE_URL)))
    if "anthropic" not in declared and getattr(settings, "ANTHROPIC_CONFIGURED", False):
        found.append(("anthropic", "anthropic", _norm(settings.ANTHROPIC_BASE_URL)))
    return found


def forwards(apps, schema_editor):
    Arm = apps.get_model("studies", "Arm")
    declared = _declared()
    unmatched = []
    for arm in Arm.objects.select_related("study").all():
        if arm.provider == "simulated":
            endpoint = "simulated"
        else:
            url = _norm(arm.base_url)
            same = [name for name, kind, base in declared if kind == arm.provider and base == url]
            endpoint = same[0] if same else arm.provider
            if url and not same:
                unmatched.append(
                    {"study": arm.study.slug, "arm": arm.key, "base_url": arm.base_url,
                     "endpoint": endpoint}
                )
        arm.endpoint = endpoint
        arm.save(update_fields=["endpoint"])
    if unmatched:
        # The operator runs migrate; researchers never see this.
        sys.stdout.write(
            "\n  Arms whose base_url matched no declared model endpoint (register these, or the "
            "arms' calls are refused):\n  " + json.dumps(unmatched) + "\n"
        )


class Migration(migrations.Migration):

    dependencies = [
        ("studies", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="arm",
            name="endpoint",
            field=models.CharField(default="", max_length=40),
            preserve_default=False,
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
