"""Staff see and edit memories, the embedding indexes, and re-embedding jobs with their progress."""

from django.contrib import admin, messages
from django.utils.html import format_html

from apps.memory import services
from apps.memory.models import EmbeddingIndex, Job, Memory
from workers.llm.engines import EngineConfigError


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ("text_short", "kind", "user", "character", "importance", "embedding_version", "updated_at")
    list_filter = ("kind", "character", "embedding_version")
    search_fields = ("text", "user__username")
    raw_id_fields = ("user", "session")
    readonly_fields = (
        "source_message_ids",
        "embedding_model",
        "embedding_version",
        "embedded_at",
        "created_at",
        "updated_at",
    )

    @admin.display(description="memory")
    def text_short(self, obj):
        return obj.text[:100]

    def save_model(self, request, obj, form, change):
        services.memory_save(memory=obj)  # the index follows the edited text at once

    def delete_model(self, request, obj):
        services.memory_delete_any(obj)

    def delete_queryset(self, request, queryset):
        services.memory_delete_any(*queryset)


def _progress(job: Job) -> str:
    return format_html(
        '<progress value="{}" max="{}" style="width:10em"></progress> {} / {} ({}%)',
        job.done,
        job.total or 1,
        job.done,
        job.total,
        f"{job.percent:.0f}",
    )


@admin.register(EmbeddingIndex)
class EmbeddingIndexAdmin(admin.ModelAdmin):
    list_display = ("collection", "model", "version", "state", "created_at", "activated_at", "retired_at")
    readonly_fields = ("collection", "version", "state", "created_at", "activated_at", "retired_at")
    actions = ["reembed", "drop_vectors"]

    def has_add_permission(self, request):
        return False  # indexes are made by re-embedding jobs

    def has_delete_permission(self, request, obj=None):
        return False  # history; a deleted row would let its version, and its collection's name, come back

    # Staff see only the actions their permissions allow (Django calls has_<name>_permission).
    def has_reembed_permission(self, request):
        return request.user.has_perms(["memory.add_job", "memory.change_embeddingindex"])

    def has_drop_vectors_permission(self, request):
        return request.user.has_perm("memory.change_embeddingindex")

    @admin.action(description="Drop the vectors of the selected retired indexes", permissions=["drop_vectors"])
    def drop_vectors(self, request, queryset):
        dropped, recent = services.indexes_retired_drop(index_ids=list(queryset.values_list("pk", flat=True)))
        if dropped:
            self.message_user(request, "Dropped the vectors of " + ", ".join(str(i) for i in dropped) + ".")
        if recent:
            self.message_user(
                request,
                "Retired less than 10 minutes ago, try again later: " + ", ".join(str(i) for i in recent) + ".",
                messages.WARNING,
            )
        if skipped := queryset.count() - len(dropped) - len(recent):
            self.message_user(
                request, f"{skipped} index(es) left alone: only retired indexes can be dropped.", messages.WARNING
            )

    @admin.action(description="Re-embed every memory into a new version of this model", permissions=["reembed"])
    def reembed(self, request, queryset):
        if queryset.count() != 1:
            return self.message_user(request, "Choose exactly one index.", messages.ERROR)
        try:
            job = services.reembed_start(model=queryset.get().model, user=request.user)
        except (services.MemoryRequestError, EngineConfigError) as exc:
            return self.message_user(request, str(exc), messages.ERROR)
        self.message_user(request, f"Started job {job.pk}: {job.total} memories in {job.chunks_total} chunks.")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "index", "status", "progress", "created_at", "finished_at")
    list_filter = ("status",)
    readonly_fields = (
        "kind",
        "index",
        "status",
        "progress",
        "total",
        "done",
        "chunks_total",
        "error",
        "created_by",
        "created_at",
        "finished_at",
    )
    actions = ["resume", "cancel"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="progress")
    def progress(self, obj):
        return _progress(obj)

    def changelist_view(self, request, extra_context=None):
        if Job.objects.filter(status=Job.Status.RUNNING).exists():  # follow a running job without clicking
            extra_context = {**(extra_context or {}), "refresh_seconds": 3}
        return super().changelist_view(request, extra_context)

    @admin.action(description="Resume (queue the chunks not done)", permissions=["change"])
    def resume(self, request, queryset):
        self._each(request, queryset, services.reembed_resume)

    @admin.action(description="Cancel", permissions=["change"])
    def cancel(self, request, queryset):
        self._each(request, queryset, services.reembed_cancel)

    def _each(self, request, queryset, service):
        for job in queryset:
            try:
                service(job_id=job.pk)
            except services.MemoryRequestError as exc:
                self.message_user(request, f"Job {job.pk}: {exc.message}", messages.ERROR)
