"""The "My account" pages: API tokens (create, shown once, revoke) and what characters remember of me
(list, search by meaning, delete). Thin views over the accounts and memory services and selectors."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.quotas import quota_take
from apps.accounts.selectors import token_get_for_user, tokens_of
from apps.accounts.services import token_create, token_revoke
from apps.core.errors import AppError
from apps.memory.selectors import (
    memories_newest,
    memories_search_by_worker,
    memory_character_get,
    memory_characters,
    memory_get_for_user,
)
from apps.memory.services import MemoryRequestError, memory_delete
from apps.realtime.protocol import ErrorCode
from apps.web.forms import MemorySearchForm, TokenCreateForm

TOKENS_SHOWN = 100  # live tokens listed
MEMORIES_PER_PAGE = 20
MEMORY_HITS_SHOWN = 20  # a search's nearest memories
NEW_TOKEN = "web:new-token"  # session key: the key just created, until the page shows it once


@login_required
@require_GET
def account(request: HttpRequest) -> HttpResponse:
    return render(request, "web/account/account.html")


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    """My live API tokens and a form to create one. A new key is shown on the next page only: it
    waits in the session until that page takes it (a reload, or the back button, no longer has it)."""
    form = TokenCreateForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            issued = token_create(user=request.user, name=form.cleaned_data["name"])
            request.session[NEW_TOKEN] = {"id": issued.token.pk, "key": issued.key}
            messages.success(request, f"Token “{issued.token.name}” created.")
            return redirect("web:tokens")
        status = 400
    new = request.session.pop(NEW_TOKEN, None)
    context = {
        "form": form,
        "tokens": tokens_of(user=request.user, limit=TOKENS_SHOWN),
        "new_key": new["key"] if new else "",
        "new_token_id": new["id"] if new else None,
    }
    response = render(request, "web/account/tokens.html", context, status=status)
    add_never_cache_headers(response)  # no copy of the key in any cache, nor a stale list on "back"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def token_revoke_view(request: HttpRequest, token_id: str) -> HttpResponse:
    """Revoke one of my tokens: GET asks to confirm, a POST with `confirm=yes` revokes (its sockets end at once)."""
    token = token_get_for_user(user=request.user, token_id=token_id)
    if token is None:
        raise Http404("No such token.")
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        token_revoke(token=token)
        messages.success(request, f"Token “{token.name}” revoked: it no longer works anywhere.")
        return redirect("web:tokens")
    status = 400 if request.method == "POST" else 200  # a POST without the confirmation revokes nothing
    return render(request, "web/account/token_revoke.html", {"token": token}, status=status)


@login_required
@require_GET
def memories(request: HttpRequest) -> HttpResponse:
    """The characters I have memories with."""
    return render(request, "web/account/memories.html", {"characters": memory_characters(user_id=request.user.pk)})


@login_required
@require_GET
def character_memories(request: HttpRequest, slug: str) -> HttpResponse:
    """What one character remembers of me: newest first, a page at a time, or the nearest to a search
    by meaning (the embed queue's job, as the socket and REST searches)."""
    character = memory_character_get(user_id=request.user.pk, slug=slug)
    if character is None:
        raise Http404("No such character.")
    form = MemorySearchForm(request.GET)
    status, problem, query, hits = 200, "", "", None
    if not form.is_valid():
        status = 400
    elif query := form.cleaned_data["q"]:
        if quota_take(user_id=request.user.pk, kind="memory_search") is not None:
            status, problem = 429, "Too many searches in a short time; wait a little before the next one."
        else:
            try:
                hits = memories_search_by_worker(
                    user_id=request.user.pk, character_id=character.pk, query=query, k=MEMORY_HITS_SHOWN
                )
            except AppError as exc:
                status, problem = (504 if exc.code == ErrorCode.MEMORY_TIMEOUT else 503), exc.message
    page = None
    if hits is None:  # no search, or one that could not run: the list, so nothing seems lost
        rows = memories_newest(user_id=request.user.pk, character_id=character.pk)
        page = Paginator(rows, MEMORIES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "character": character,
        "form": form,
        "query": query,
        "hits": hits,
        "page": page,
        "problem": problem,
        "here": request.get_full_path(),
    }
    return render(request, "web/account/character_memories.html", context, status=status)


@login_required
@require_POST
def memory_delete_view(request: HttpRequest, memory_id: str) -> HttpResponse:
    """Delete one of my memories, from the database and the index at once; back to where I was."""
    memory = memory_get_for_user(user_id=request.user.pk, memory_id=memory_id)
    if memory is None:
        raise Http404("No such memory.")
    try:
        memory_delete(user_id=request.user.pk, memory_id=memory.pk)
    except MemoryRequestError:  # deleted meanwhile (another tab, the socket)
        raise Http404("No such memory.") from None
    messages.success(request, f"{memory.character.name} no longer remembers that.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = reverse("web:character-memories", args=[memory.character.slug])
    return redirect(back)
