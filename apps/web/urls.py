from django.contrib.auth import views as auth
from django.urls import path, reverse_lazy

from apps.web import account, views

app_name = "web"

T = "web/registration/"

urlpatterns = [
    path("", views.gallery, name="gallery"),
    path("chat/<slug:slug>/", views.chat, name="chat"),
    path("chat/<slug:slug>/new", views.chat_new, name="chat-new"),
    path("messages/<str:message_id>/timings", views.message_timings_view, name="message-timings"),
    path("sessions/search/", views.session_search_view, name="session-search"),
    path("sessions/<str:session_id>/rename", views.session_rename_view, name="session-rename"),
    path("sessions/<str:session_id>/delete", views.session_delete_view, name="session-delete"),
    path("account/", account.account, name="account"),
    path("account/tokens/", account.tokens, name="tokens"),
    path("account/tokens/<str:token_id>/revoke", account.token_revoke_view, name="token-revoke"),
    path("account/memories/", account.memories, name="memories"),
    path("account/memories/<slug:slug>/", account.character_memories, name="character-memories"),
    path("account/memory/<str:memory_id>/delete", account.memory_delete_view, name="memory-delete"),
    path("signup/", views.sign_up, name="signup"),
    path(
        "login/", auth.LoginView.as_view(template_name=T + "login.html", redirect_authenticated_user=True), name="login"
    ),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path(
        "password/change/",
        auth.PasswordChangeView.as_view(
            template_name=T + "password_change.html", success_url=reverse_lazy("web:password-change-done")
        ),
        name="password-change",
    ),
    path(
        "password/change/done/",
        auth.PasswordChangeDoneView.as_view(template_name=T + "password_change_done.html"),
        name="password-change-done",
    ),
    path(
        "password/reset/",
        auth.PasswordResetView.as_view(
            template_name=T + "password_reset.html",
            email_template_name=T + "password_reset_email.txt",
            subject_template_name=T + "password_reset_subject.txt",
            success_url=reverse_lazy("web:password-reset-done"),
        ),
        name="password-reset",
    ),
    path(
        "password/reset/sent/",
        auth.PasswordResetDoneView.as_view(template_name=T + "password_reset_done.html"),
        name="password-reset-done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        auth.PasswordResetConfirmView.as_view(
            template_name=T + "password_reset_confirm.html", success_url=reverse_lazy("web:password-reset-complete")
        ),
        name="password-reset-confirm",
    ),
    path(
        "password/reset/done/",
        auth.PasswordResetCompleteView.as_view(template_name=T + "password_reset_complete.html"),
        name="password-reset-complete",
    ),
]
