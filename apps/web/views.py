"""The end-user pages: thin views over the domain's services and selectors."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.services import SignUpClosed, user_sign_up
from apps.characters.selectors import (
    character_gallery,
    character_get_for_chat,
    character_tags_published,
)
from apps.conversations.selectors import characters_talked_to, session_history, session_latest
from apps.conversations.services import session_create
from apps.web.forms import GalleryFilter, SignUpForm

HISTORY_SHOWN = 200  # messages of a session rendered on the chat page


def sign_up(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("web:gallery")
    if not settings.SIGNUP_OPEN:  # the page says so; a sign-up sent anyway is refused
        return render(request, "web/registration/signup_closed.html", status=403 if request.method == "POST" else 200)
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = user_sign_up(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
            )
        except SignUpClosed:
            return render(request, "web/registration/signup_closed.html", status=403)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}! Pick a character to talk with.")
        return redirect("web:gallery")
    return render(request, "web/registration/signup.html", {"form": form})


@login_required
def gallery(request: HttpRequest) -> HttpResponse:
    form = GalleryFilter(request.GET)
    query = tag = ""
    if form.is_valid():
        query, tag = form.cleaned_data["q"], form.cleaned_data["tag"]
    characters = list(character_gallery(query=query, tag=tag))
    talked_to = characters_talked_to(user=request.user)
    cards = [{"character": c, "can_continue": c.pk in talked_to} for c in characters]
    context = {"form": form, "cards": cards, "query": query, "tag": tag, "tags": character_tags_published()}
    return render(request, "web/gallery.html", context)


def _character_or_404(request: HttpRequest, slug: str):
    character = character_get_for_chat(name=slug)
    if character is None or character.slug != slug:
        raise Http404("No such character.")
    return character


@login_required
def chat(request: HttpRequest, slug: str) -> HttpResponse:
    """The conversation the socket's `connect` opens: the latest session with the character (or,
    when there is none yet, the new one it will start, which opens with the greeting)."""
    character = _character_or_404(request, slug)
    session = session_latest(user=request.user, character=character)
    history = session_history(session_id=session.pk, limit=HISTORY_SHOWN) if session else []
    context = {"character": character, "session": session, "history": history}
    return render(request, "web/chat.html", context)


@login_required
@require_POST
def chat_new(request: HttpRequest, slug: str) -> HttpResponse:
    """Start a new session with the character; the chat page (and its socket) then opens it."""
    character = _character_or_404(request, slug)
    session_create(user=request.user, character=character)
    return redirect("web:chat", slug=character.slug)
