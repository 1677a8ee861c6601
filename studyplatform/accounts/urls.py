"""Researcher account pages under /accounts/: sign-up, email verification, password reset,
then Django's own sign-in, sign-out and password pages.

No app_name: the names ("signup", "account_verify", "password_reset", "login", ...) are the
global ones Django's auth views, emails and templates already use.
"""

from django.urls import include, path

from . import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("signup/done/", views.signup_done, name="signup_done"),
    path("verify-email/resend/", views.verify_resend, name="account_verify_resend"),
    path("verify-email/<str:token>/", views.verify, name="account_verify"),
    # Before django.contrib.auth.urls so its "password_reset" name resolves to the throttled view.
    path(
        "password_reset/",
        views.ThrottledPasswordResetView.as_view(),
        name="password_reset",
    ),
    path("", include("django.contrib.auth.urls")),
]
