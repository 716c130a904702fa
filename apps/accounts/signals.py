"""Thin receivers: each hands a Django signal to a service."""

from apps.accounts.services import login_session_end


def on_user_logged_out(sender, request, user, **kwargs):
    """The logout view flushes the session after this signal: its key is still readable here."""
    session = getattr(request, "session", None)
    login_session_end(session_key=session.session_key if session is not None else None)
