"""Accounts that already hold a study role when verification is introduced count as verified.

Why: they are running studies today, and a verification wall would lock a team out of a live
study (and its safety queue) until every member found the email. What it does not do: it does
not make an old membership trustworthy. An account that took a role through the old
match-by-username/email invitation keeps it (owners should review the team page and the
`membership.add` audit events); the record only means it need not verify again, and a team
invitation still needs the emailed token, which goes to the real owner of the address.
Recorded with method "migration" so admins can tell these apart.
"""

from django.db import migrations
from django.utils import timezone


def forwards(apps, schema_editor):
    EmailVerification = apps.get_model("accounts", "EmailVerification")
    Membership = apps.get_model("studies", "Membership")
    User = apps.get_model("auth", "User")
    now = timezone.now()
    member_ids = Membership.objects.values_list("user_id", flat=True).distinct()
    users = User.objects.filter(pk__in=member_ids).exclude(email="")
    EmailVerification.objects.bulk_create(
        [
            EmailVerification(user=user, email=user.email, method="migration", verified_at=now)
            for user in users.filter(email_verification__isnull=True)
        ]
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_email_verification"),
        ("studies", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
