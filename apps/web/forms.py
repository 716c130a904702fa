from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from apps.accounts.models import ApiToken
from apps.conversations.services import TITLE_MAX_CHARS

MEMORY_QUERY_MAX_CHARS = 500  # as the REST search allows


class SignUpForm(UserCreationForm):
    """Username, e-mail (for password resets) and a password the validators accept; it saves nothing
    itself: the view hands the cleaned fields to `apps.accounts.services.user_sign_up`."""

    email = forms.EmailField(help_text="Used only to reset your password.")

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")


class GalleryFilter(forms.Form):
    """The gallery's GET parameters."""

    q = forms.CharField(required=False, max_length=100, label="Search characters")
    tag = forms.CharField(required=False, max_length=50)


class SessionRenameForm(forms.Form):
    """A session's new title; blank clears it (the sidebar then shows the last message)."""

    title = forms.CharField(required=False, max_length=TITLE_MAX_CHARS, strip=True)


class SessionSearchForm(forms.Form):
    """The sessions search's GET parameter: words to find in my messages."""

    q = forms.CharField(required=False, max_length=200, label="Search my messages")


class TokenCreateForm(forms.Form):
    """A new API token's name, to tell it apart from my others."""

    name = forms.CharField(
        max_length=ApiToken._meta.get_field("name").max_length,
        strip=True,
        label="Token name",
        help_text="What it is for, e.g. “laptop script”. The token itself is shown once, after you create it.",
    )


class MemorySearchForm(forms.Form):
    """A memories page's GET parameter: words whose meaning to look for in what a character remembers."""

    q = forms.CharField(required=False, max_length=MEMORY_QUERY_MAX_CHARS, strip=True, label="Search these memories")
