from django.urls import path

from . import views

app_name = "participants"

urlpatterns = [
    path("s/<slug:slug>/", views.study_page, name="study"),
    path("s/<slug:slug>/screener/", views.screener, name="screener"),
    path("s/<slug:slug>/consent/", views.consent, name="consent"),
    path("p/", views.home, name="home"),
    path("p/welcome/", views.welcome, name="welcome"),
    path("p/consent/", views.consent_copy, name="consent_copy"),
    path("p/consent/renew/", views.consent_renew, name="consent_renew"),
    path("p/data/", views.data, name="data"),
    path("p/data/<int:download_id>/file/", views.data_file, name="data_file"),
    path("p/withdraw/", views.withdraw, name="withdraw"),
    path("p/withdrawn/", views.withdrawn, name="withdrawn"),
    path("p/password/", views.password, name="password"),
    path("p/timezone/", views.timezone_edit, name="timezone"),
    path("p/return-link/", views.return_link_renew, name="return_link_renew"),
    path("p/signin/", views.signin, name="signin"),
    path("p/signin/password/", views.signin_password, name="signin_password"),
    path("p/signin/<str:token>/", views.signin_token, name="signin_token"),
    path("p/r/<str:token>/", views.return_link, name="return_link"),
    path("p/signout/", views.signout, name="signout"),
]
