# SafetyAlert now belongs to the safety app (issue 18). The model leaves chat's state only: the
# table chat_safetyalert and its rows stay where they are, owned by safety 0001 from now on.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0001_initial"),
        # safety takes the model over first, so no state ever lacks it.
        ("safety", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="SafetyAlert")],
            database_operations=[],
        ),
    ]
