"""Drop the arm columns that let a protocol choose a server address and a key variable.

A separate migration from 0002's data step: PostgreSQL refuses to alter a table with pending
deferred-constraint events from row updates in the same transaction.
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("studies", "0002_arm_endpoint"),
    ]

    operations = [
        migrations.RemoveField(model_name="arm", name="base_url"),
        migrations.RemoveField(model_name="arm", name="api_key_env"),
    ]
