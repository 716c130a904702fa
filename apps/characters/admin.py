"""Character curation: list, edit, publish, duplicate, and a page to try a character before publishing."""

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import ngettext

from apps.characters.models import Character, Voice
from apps.characters.selectors import greeting_audio_fresh
from apps.characters.services import (
    character_duplicate,
    character_set_published,
    greeting_audio_refresh,
    voice_characters_refresh,
)

# The conversation socket route (personatalk/asgi.py); the try page connects to it from the browser.
SOCKET_PATH = "/ws"


@admin.register(Voice)
class VoiceAdmin(admin.ModelAdmin):
    list_display = ["name", "engine", "model", "speaker", "language", "speed"]
    list_filter = ["engine", "language"]
    search_fields = ["name", "model", "speaker"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        voice_characters_refresh(voice=obj)  # their greetings are spoken in it


def _avatar(character: Character, size: int):
    """An <img> of the avatar, or a round placeholder with the name's initial."""
    if character.avatar:
        return format_html(
            '<img src="{}" alt="" width="{}" height="{}" style="object-fit:cover;border-radius:50%">',
            character.avatar.url,
            size,
            size,
        )
    return format_html(
        '<span style="display:inline-flex;align-items:center;justify-content:center;width:{}px;height:{}px;'
        'border-radius:50%;background:var(--darkened-bg);color:var(--body-quiet-color);font-weight:bold">'
        "{}</span>",
        size,
        size,
        (character.name[:1] or "?").upper(),
    )


@admin.register(Character)
class CharacterAdmin(admin.ModelAdmin):
    list_display = ["avatar_thumbnail", "name", "slug", "voice", "language", "short_tags", "is_published", "updated_at"]
    list_display_links = ["avatar_thumbnail", "name"]
    list_filter = ["is_published", "language", "voice"]
    list_select_related = ["voice"]
    search_fields = ["name", "slug", "description", "tags", "persona"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["avatar_preview", "greeting_audio_state", "created_at", "updated_at"]
    actions = ["publish", "unpublish", "duplicate"]
    fieldsets = [
        ("Identity", {"fields": ["name", "slug", "description", "tags"]}),
        ("Persona", {"fields": ["persona", "greeting", "example_dialogue"]}),
        ("Presentation", {"fields": ["avatar_preview", "avatar", "language"]}),
        ("Voice", {"fields": ["voice", "greeting_audio_state"]}),
        ("Publishing", {"fields": ["is_published", "created_at", "updated_at"]}),
    ]

    @admin.display(description="")
    def avatar_thumbnail(self, obj: Character):
        return _avatar(obj, 32)

    @admin.display(description="Avatar preview")
    def avatar_preview(self, obj: Character):
        return _avatar(obj, 128)

    @admin.display(description="Greeting audio")
    def greeting_audio_state(self, obj: Character):
        if obj.pk is None or not obj.greeting:
            return "—"
        if greeting_audio_fresh(character=obj):
            return format_html('<audio controls preload="none" src="{}"></audio>', obj.greeting_audio.url)
        return "Being rendered (saved greeting or voice changed); reload in a moment."

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        greeting_audio_refresh(character=obj)  # a new greeting or voice: render it ahead of the first call

    @admin.display(description="Tags", ordering="tags")
    def short_tags(self, obj: Character) -> str:
        return Truncator(", ".join(obj.tag_list)).chars(40)

    # --- actions: thin callers of the services ------------------------------------------------

    @admin.action(description="Publish selected characters", permissions=["change"])
    def publish(self, request, queryset):
        changed = character_set_published(characters=queryset, published=True)
        self.message_user(
            request,
            ngettext("Published %d character.", "Published %d characters.", changed) % changed,
            messages.SUCCESS,
        )

    @admin.action(description="Unpublish selected characters", permissions=["change"])
    def unpublish(self, request, queryset):
        changed = character_set_published(characters=queryset, published=False)
        self.message_user(
            request,
            ngettext("Unpublished %d character.", "Unpublished %d characters.", changed) % changed,
            messages.SUCCESS,
        )

    @admin.action(description="Duplicate selected characters as drafts", permissions=["add"])
    def duplicate(self, request, queryset):
        copies = [character_duplicate(character=c) for c in queryset]
        self.message_user(
            request,
            ngettext(
                "Duplicated %(n)d character as an unpublished draft: %(slugs)s.",
                "Duplicated %(n)d characters as unpublished drafts: %(slugs)s.",
                len(copies),
            )
            % {"n": len(copies), "slugs": ", ".join(c.slug for c in copies)},
            messages.SUCCESS,
        )

    # --- try page -----------------------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        try_url = path(
            "<path:object_id>/try/", self.admin_site.admin_view(self.try_view), name="{}_{}_try".format(*info)
        )
        return [try_url, *super().get_urls()]

    def try_view(self, request, object_id: str):
        """Chat with the character over the real socket (staff session cookie), published or not."""
        character = self.get_object(request, unquote(object_id))
        if character is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, character):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": f"Try {character.name}",
            "opts": self.opts,
            "original": character,
            "has_view_permission": True,
            "try_config": {
                "character_name": character.slug,
                "display_name": character.name,
                "socket_path": SOCKET_PATH,
                "max_chars": settings.WS_MAX_MESSAGE_CHARS,
            },
        }
        return TemplateResponse(request, "admin/characters/character/try.html", context)
