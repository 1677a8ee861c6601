from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "studyplatform.chat"
    label = "chat"
    verbose_name = "Chat"
