from django.conf import settings


def site(request) -> dict:
    """What every web page's layout needs: whether to offer sign-up."""
    return {"signup_open": settings.SIGNUP_OPEN}
