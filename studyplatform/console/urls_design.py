from django.urls import path

from . import views_design

urlpatterns = [
    path("", views_design.study_list, name="study_list"),
]
