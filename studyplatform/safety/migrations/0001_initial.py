# SafetyAlert moved here from the chat app (issue 18). Its table, chat_safetyalert, already
# exists (chat 0001 created it), so this migration only tells Django's model state that the
# safety app now owns it: no SQL runs and no row is copied.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import studyplatform.core.fields


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("chat", "0001_initial"),
        ("participants", "0001_initial"),
        ("studies", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="SafetyAlert",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("source", models.CharField(help_text="chat or survey", max_length=20)),
                        (
                            "severity",
                            models.CharField(
                                choices=[("low", "Low"), ("medium", "Medium"), ("high", "High")],
                                max_length=10,
                            ),
                        ),
                        ("category", models.CharField(max_length=40)),
                        (
                            "excerpt",
                            studyplatform.core.fields.EncryptedTextField(blank=True, default=""),
                        ),
                        ("detector", models.CharField(blank=True, default="", max_length=60)),
                        ("created_at", models.DateTimeField()),
                        (
                            "due_at",
                            models.DateTimeField(
                                help_text="created_at + the protocol's response time"
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("open", "Open"),
                                    ("acknowledged", "Acknowledged"),
                                    ("resolved", "Resolved"),
                                ],
                                default="open",
                                max_length=14,
                            ),
                        ),
                        ("acknowledged_at", models.DateTimeField(blank=True, null=True)),
                        ("resolved_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "notes",
                            studyplatform.core.fields.EncryptedTextField(blank=True, default=""),
                        ),
                        (
                            "acknowledged_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "message",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to="chat.message",
                            ),
                        ),
                        (
                            "participant",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="safety_alerts",
                                to="participants.participant",
                            ),
                        ),
                        (
                            "resolved_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "study",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="safety_alerts",
                                to="studies.study",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "chat_safetyalert",
                        "ordering": ["status", "-created_at"],
                        "indexes": [
                            models.Index(
                                fields=["study", "status", "created_at"],
                                name="chat_safety_study_i_2404fc_idx",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
