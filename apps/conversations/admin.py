"""Chat sessions and their messages, read-only: they are the record of what was said."""

from django.contrib import admin, messages
from django.db.models import Count
from django.utils.text import Truncator
from django.utils.translation import ngettext

from apps.conversations.models import ChatSession, Message
from apps.conversations.services import session_soft_delete

_MESSAGE_FIELDS = ["role", "content", "emotion", "status", "timings", "created_at"]


class MessageInline(admin.TabularInline):
    model = Message
    fields = _MESSAGE_FIELDS
    readonly_fields = _MESSAGE_FIELDS
    ordering = ["created_at"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "user", "character", "message_count", "created_at", "updated_at", "deleted_at"]
    list_filter = [("deleted_at", admin.EmptyFieldListFilter), "character", "created_at"]
    list_select_related = ["user", "character"]
    search_fields = ["title", "user__username", "character__name", "character__slug", "messages__content"]
    date_hierarchy = "created_at"
    fields = ["id", "user", "character", "title", "created_at", "updated_at", "deleted_at"]
    readonly_fields = fields
    inlines = [MessageInline]
    actions = ["soft_delete"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(message_total=Count("messages"))

    @admin.display(description="Messages", ordering="message_total")
    def message_count(self, obj: ChatSession) -> int:
        return obj.message_total

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # sessions are soft-deleted (action below), never dropped

    def has_soft_delete_permission(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.delete_{self.opts.model_name}")

    @admin.action(description="Mark selected sessions deleted", permissions=["soft_delete"])
    def soft_delete(self, request, queryset):
        live = list(queryset.filter(deleted_at__isnull=True))
        for session in live:
            session_soft_delete(session=session)
        self.message_user(
            request,
            ngettext("Marked %d session deleted.", "Marked %d sessions deleted.", len(live)) % len(live),
            messages.SUCCESS,
        )


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["short_content", "session", "role", "emotion", "status", "created_at"]
    list_filter = ["role", "status", "emotion", "created_at"]
    list_select_related = ["session__user", "session__character"]
    search_fields = ["content", "session__title", "session__user__username"]
    date_hierarchy = "created_at"
    fields = ["id", "session", *_MESSAGE_FIELDS, "memories_used", "lore_used"]
    readonly_fields = fields

    @admin.display(description="Content")
    def short_content(self, obj: Message) -> str:
        return Truncator(obj.content).chars(80) or "—"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
