from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"

    def ready(self):
        from django.contrib.auth.signals import user_logged_out

        from apps.accounts.signals import on_user_logged_out

        user_logged_out.connect(on_user_logged_out, dispatch_uid="accounts.login_session_end")
