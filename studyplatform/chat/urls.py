from django.urls import path

from . import views, voice_views

app_name = "chat"

urlpatterns = [
    path("p/chat/", views.conversation_list, name="list"),
    path("p/chat/new/", views.conversation_new, name="new"),
    path("p/chat/memory/", views.memory, name="memory"),
    path("p/chat/import/", views.import_history, name="import"),
    path("p/chat/c/<int:conversation_id>/", views.conversation_detail, name="conversation"),
    path("p/chat/c/<int:conversation_id>/send/", views.message_send, name="send"),
    path("p/chat/c/<int:conversation_id>/reply/", views.message_reply, name="reply"),
    path("p/chat/stream/<int:user_message_id>/", views.stream, name="stream"),
    path("p/chat/stream/<int:user_message_id>/stop/", views.stream_stop, name="stop"),
    path("p/chat/m/<int:message_id>/regenerate/", views.regenerate, name="regenerate"),
    path("p/chat/m/<int:message_id>/activate/", views.activate, name="activate"),
    path("p/chat/c/<int:conversation_id>/voice/", voice_views.message_voice, name="voice"),
    path("p/chat/m/<int:message_id>/speech/", voice_views.reply_speech_view, name="speech"),
    path(
        "p/chat/speech/<slug:sid>/<int:index>/",
        voice_views.segment_speech_view,
        name="segment_speech",
    ),
]
