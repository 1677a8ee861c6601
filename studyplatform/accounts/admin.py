"""Admin: which researcher accounts verified their address, and a way to vouch for one.

Platform admins may mark an address verified (e.g. a colleague whose institutional mail filters
the link); the action is audited like a clicked link.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from .models import EmailVerification
from .selectors import email_is_verified
from .services import VerificationError, email_mark_verified

User = get_user_model()


@admin.register(EmailVerification)
class EmailVerificationAdmin(admin.ModelAdmin):
    list_display = ("user", "email", "method", "verified_at")
    list_filter = ("method",)
    search_fields = ("user__username", "email")
    readonly_fields = ("user", "email", "method", "verified_at")

    def has_add_permission(self, request):
        return False  # use the "mark email verified" action on users


admin.site.unregister(User)


@admin.register(User)
class ResearcherUserAdmin(UserAdmin):
    list_display = (*UserAdmin.list_display, "email_verified")
    list_select_related = ("email_verification",)
    actions = ["mark_email_verified"]

    @admin.display(boolean=True, description="email verified")
    def email_verified(self, obj) -> bool:
        return email_is_verified(obj)

    @admin.action(description="Mark their current email address as verified")
    def mark_email_verified(self, request, queryset):
        done = 0
        for user in queryset:
            try:
                email_mark_verified(
                    user=user, method=EmailVerification.Method.ADMIN, actor=request.user
                )
            except VerificationError as error:
                self.message_user(request, f"{user}: {error}", messages.ERROR)
            else:
                done += 1
        self.message_user(request, f"Marked {done} address(es) verified.", messages.SUCCESS)
