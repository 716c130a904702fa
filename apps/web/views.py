"""The end-user pages: thin views over the domain's services and selectors."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.services import SignUpClosed, user_sign_up
from apps.characters.selectors import (
    character_gallery,
    character_get_for_chat,
    character_tags_published,
)
from apps.conversations.selectors import (
    characters_talked_to,
    message_timings_for_user,
    session_get_for_user,
    session_history,
    session_latest,
    session_list,
    session_search,
)
from apps.conversations.services import session_create, session_delete, session_rename
from apps.realtime.protocol import ErrorCode
from apps.web.forms import GalleryFilter, SessionRenameForm, SessionSearchForm, SignUpForm

HISTORY_SHOWN = 200  # messages of a session rendered on the chat page
SESSIONS_SHOWN = 50  # sessions in the chat page's sidebar
HITS_SHOWN = 50  # sessions listed by a search


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


def _session_or_404(request: HttpRequest, session_id, character=None):
    """One of the user's live sessions (with `character`, if given); anyone else's reads as 404."""
    session = session_get_for_user(user=request.user, session_id=session_id, character=character)
    if session is None:
        raise Http404("No such session.")
    return session


def _chat_url(session) -> str:
    return f"{reverse('web:chat', args=[session.character.slug])}?session={session.pk}"


@login_required
def chat(request: HttpRequest, slug: str) -> HttpResponse:
    """The conversation the socket's `connect` opens: `?session=<id>` (one of mine, with this
    character), else the latest session with the character (or, when there is none yet, the new
    one the socket will start, which opens with the greeting)."""
    character = _character_or_404(request, slug)
    if "session" in request.GET:
        session = _session_or_404(request, request.GET["session"], character)
    else:
        session = session_latest(user=request.user, character=character)
    history = session_history(session_id=session.pk, limit=HISTORY_SHOWN) if session else []
    sessions = session_list(user=request.user, character=character, limit=SESSIONS_SHOWN)
    context = {
        "character": character,
        "session": session,
        "current_session_id": str(session.pk) if session else "",
        "history": history,
        "sessions": sessions,
        "search_form": SessionSearchForm(),
        "error_meanings": ErrorCode.DESCRIPTIONS,  # chat.js shows each error code's meaning
    }
    return render(request, "web/chat.html", context)


@login_required
@require_GET
def message_timings_view(request: HttpRequest, message_id: str) -> JsonResponse:
    """The server's stage timings of one of my replies (and of my message it answers), for the chat
    page's per-turn latency detail. Anyone else's message reads as 404.

    A view rather than a field of `turn_end`: the timings are for people looking, only when they
    open the detail, and the wire protocol stays as ChatAnon clients know it."""
    timings = message_timings_for_user(user=request.user, message_id=message_id)
    if timings is None:
        raise Http404("No such message.")
    return JsonResponse({"reply": timings.reply, "utterance": timings.utterance})


@login_required
@require_POST
def session_rename_view(request: HttpRequest, session_id: str) -> HttpResponse:
    """Give one of my sessions a title (a blank one clears it); back to that session."""
    session = _session_or_404(request, session_id)
    form = SessionRenameForm(request.POST)
    if form.is_valid():
        session = session_rename(user=request.user, session_id=session.pk, title=form.cleaned_data["title"])
        messages.success(request, "Session renamed." if session.title else "Session title cleared.")
    else:
        messages.error(request, "That title is too long.")
    return redirect(_chat_url(session))


@login_required
@require_http_methods(["GET", "POST"])
def session_delete_view(request: HttpRequest, session_id: str) -> HttpResponse:
    """Delete one of my sessions: GET asks to confirm, a POST with `confirm=yes` deletes."""
    session = _session_or_404(request, session_id)
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        session_delete(user=request.user, session_id=session.pk)
        messages.success(request, "Session deleted.")
        return redirect("web:chat", slug=session.character.slug)
    status = 400 if request.method == "POST" else 200  # a POST without the confirmation deletes nothing
    preview = session_history(session_id=session.pk, limit=1)
    context = {"session": session, "preview": preview[0].content if preview else ""}
    return render(request, "web/session_delete.html", context, status=status)


@login_required
@require_GET
def session_search_view(request: HttpRequest) -> HttpResponse:
    """Search across my messages; each hit links to its session."""
    form = SessionSearchForm(request.GET)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    hits = session_search(user=request.user, query=query, limit=HITS_SHOWN) if query else []
    return render(request, "web/session_search.html", {"search_form": form, "query": query, "hits": hits})


@login_required
@require_POST
def chat_new(request: HttpRequest, slug: str) -> HttpResponse:
    """Start a new session with the character; the chat page (and its socket) then opens it."""
    character = _character_or_404(request, slug)
    session_create(user=request.user, character=character)
    return redirect("web:chat", slug=character.slug)  # the latest session: the new one
