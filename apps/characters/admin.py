"""Character curation: list, edit, publish, duplicate, a page to try a character before publishing,
character cards imported (a page of its own) and exported (actions), and the lorebook."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import ngettext
from django.views.decorators.csrf import csrf_protect

from apps.characters.admin_cards import (
    UPLOAD_FIELD,
    CardUploadHandler,
    card_upload_max_bytes,
    card_upload_refusal,
    cards_download,
    cards_import,
)
from apps.characters.models import Character, LorebookEntry, Voice
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


class KeysField(forms.CharField):
    """A lorebook entry's keys, a JSON list, edited as comma-separated text."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return [key.strip() for key in (super().to_python(value) or "").split(",") if key.strip()]


class LorebookEntryForm(forms.ModelForm):
    keys = KeysField(required=False, help_text="Comma-separated words or phrases, in any case unless case-sensitive.")
    secondary_keys = KeysField(required=False, help_text="With selective: one of these must appear as well.")

    class Meta:
        model = LorebookEntry
        fields = [
            "character",
            "comment",
            "name",
            "keys",
            "secondary_keys",
            "content",
            "enabled",
            "constant",
            "selective",
            "case_sensitive",
            "insertion_order",
            "priority",
            "position",
        ]
        widgets = {
            "comment": forms.TextInput(attrs={"size": 40}),
            "name": forms.TextInput(attrs={"size": 40}),
            "content": forms.Textarea(attrs={"rows": 4}),
        }


_ENTRY_FIELDSETS = [
    (
        None,
        {
            "fields": [
                ("comment", "enabled", "constant"),
                "keys",
                ("selective", "secondary_keys"),
                "content",
                ("insertion_order", "priority", "case_sensitive", "position"),
            ]
        },
    )
]
# An inline of more entries would post more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS (1000, ~15 an
# entry): a larger lorebook is edited in the lorebook entry list, filtered by character.
LOREBOOK_INLINE_MAX = 50


class LorebookEntryInline(admin.StackedInline):
    model = LorebookEntry
    form = LorebookEntryForm
    fieldsets = _ENTRY_FIELDSETS
    extra = 0
    classes = ["collapse"]


@admin.register(LorebookEntry)
class LorebookEntryAdmin(admin.ModelAdmin):
    form = LorebookEntryForm
    fieldsets = [(None, {"fields": ["character"]}), *_ENTRY_FIELDSETS]
    list_display = ["__str__", "character", "short_keys", "enabled", "constant", "insertion_order", "priority"]
    list_filter = ["enabled", "constant", "character"]
    list_select_related = ["character"]
    search_fields = ["comment", "name", "content", "character__name"]
    autocomplete_fields = ["character"]

    @admin.display(description="Keys")
    def short_keys(self, obj: LorebookEntry) -> str:
        return Truncator(", ".join(obj.keys)).chars(60)


@admin.register(Character)
class CharacterAdmin(admin.ModelAdmin):
    list_display = ["avatar_thumbnail", "name", "slug", "voice", "language", "short_tags", "is_published", "updated_at"]
    list_display_links = ["avatar_thumbnail", "name"]
    list_filter = ["is_published", "language", "voice"]
    list_select_related = ["voice"]
    search_fields = ["name", "slug", "description", "tags", "persona"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["avatar_preview", "greeting_audio_state", "lorebook", "created_at", "updated_at"]
    actions = ["publish", "unpublish", "duplicate", "export_card_v2", "export_card_v3"]
    fieldsets = [
        ("Identity", {"fields": ["name", "slug", "description", "description_in_prompt", "tags"]}),
        (
            "Persona",
            {
                "fields": [
                    "persona",
                    "personality",
                    "scenario",
                    "greeting",
                    "alternate_greetings",
                    "example_dialogue",
                    "post_history_instructions",
                ]
            },
        ),
        ("Lorebook", {"fields": ["lorebook"]}),
        ("Presentation", {"fields": ["avatar_preview", "avatar", "language"]}),
        ("Voice", {"fields": ["voice", "greeting_audio_state"]}),
        ("Card", {"fields": ["creator", "creator_notes", "character_version"], "classes": ["collapse"]}),
        ("Publishing", {"fields": ["is_published", "created_at", "updated_at"]}),
    ]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name in ("creator", "character_version"):  # text of any length in the card, a line here
            kwargs["widget"] = forms.TextInput(attrs={"size": 60})
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_inlines(self, request, obj):
        if obj is not None and obj.lorebook_entries.count() > LOREBOOK_INLINE_MAX:
            return []
        return [LorebookEntryInline]

    @admin.display(description="Entries")
    def lorebook(self, obj: Character):
        if obj.pk is None:
            return "Add entries below."
        count = obj.lorebook_entries.count()
        url = reverse("admin:characters_lorebookentry_changelist") + f"?character__id__exact={obj.pk}"
        if count > LOREBOOK_INLINE_MAX:
            return format_html('{} entries: <a href="{}">edit them in the lorebook entry list</a>.', count, url)
        return format_html(
            "{} entries (below). They join a turn's prompt when their keys are in the last {} messages.",
            count,
            settings.LOREBOOK_SCAN_MESSAGES,
        )

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

    @admin.action(description="Export as Character Card V2 (PNG with the avatar, else JSON)", permissions=["view"])
    def export_card_v2(self, request, queryset):
        return self._export(request, queryset, spec="v2")

    @admin.action(description="Export as Character Card V3 (PNG with the avatar, else JSON)", permissions=["view"])
    def export_card_v3(self, request, queryset):
        return self._export(request, queryset, spec="v3")

    def _export(self, request, queryset, *, spec: str):
        response, errors = cards_download(queryset.order_by("slug"), spec=spec)
        for error in errors:
            self.message_user(request, f"Not exported: {error}", messages.ERROR)
        return response

    # --- pages: try a character, import character cards --------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="{}_{}_import".format(*info)),
            path("<path:object_id>/try/", self.admin_site.admin_view(self.try_view), name="{}_{}_try".format(*info)),
            *super().get_urls(),
        ]

    def import_view(self, request):
        """Upload one or many card files (.json, .png); each becomes an unpublished character, or says why not.

        The upload's size is checked from its headers before the body is read, then while it is read
        (CardUploadHandler); the CSRF check reads the body, so it runs after the handler is in place.
        """
        if not self.has_add_permission(request):
            raise PermissionDenied
        handler = None
        if request.method == "POST":
            refusal = card_upload_refusal(request)
            if refusal:
                return self._import_page(request, error=refusal, status=413)
            handler = CardUploadHandler()
            request.upload_handlers = [handler]
        return csrf_protect(self._import_posted)(request, handler)

    import_view.csrf_exempt = True  # checked by _import_posted, once the upload handler is set

    def _import_posted(self, request, handler: CardUploadHandler | None):
        if handler is None:
            return self._import_page(request)
        request.POST  # noqa: B018 - reads the body through the handler (csrf_protect has, unless exempt)
        if handler.too_large:
            error = f"The files pass {card_upload_max_bytes()} bytes, the most one import takes."
            return self._import_page(request, error=error, status=413)
        if handler.too_many:
            error = f"An import takes at most {settings.CARD_IMPORT_MAX_FILES} files."
            return self._import_page(request, error=error, status=413)
        if not handler.files:
            return self._import_page(request, error="Choose one or more card files (.json or .png).", status=400)
        results = cards_import(handler.files)
        imported = sum(result.character is not None for result in results)
        return self._import_page(request, results=results, imported=imported)

    def _import_page(self, request, *, results=None, imported: int = 0, error: str = "", status: int = 200):
        context = {
            **self.admin_site.each_context(request),
            "title": "Import character cards",
            "opts": self.opts,
            "has_view_permission": self.has_view_permission(request),
            "upload_field": UPLOAD_FIELD,
            "max_files": settings.CARD_IMPORT_MAX_FILES,
            "max_mib": card_upload_max_bytes() // (1024 * 1024),
            "results": results,
            "imported": imported,
            "error": error,
        }
        return TemplateResponse(request, "admin/characters/character/import_cards.html", context, status=status)

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
