"""Long-term memory: what a character remembers of a user (the database is the source of truth),
the vector indexes derived from it (one Chroma collection per embedding model version), and the
batch jobs that rebuild an index."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Memory(models.Model):
    class Kind(models.TextChoices):
        FACT = "fact"
        PREFERENCE = "preference"
        PROMISE = "promise"  # something the character said it would do or remember
        SUMMARY = "summary"  # of a whole session, written when it went idle

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memories")
    character = models.ForeignKey("characters.Character", on_delete=models.CASCADE, related_name="memories")
    # The session a summary sums up (one summary per session, rewritten as the session grows).
    session = models.ForeignKey(
        "conversations.ChatSession", null=True, blank=True, on_delete=models.SET_NULL, related_name="summaries"
    )
    text = models.TextField()
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.FACT)
    source_message_ids = models.JSONField(default=list, blank=True)
    importance = models.FloatField(default=0.5)  # 0..1; breaks ties in retrieval
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The newest embedding written for this text (any index), for operators and for the jobs.
    embedding_model = models.CharField(max_length=300, blank=True)
    embedding_version = models.PositiveIntegerField(null=True, blank=True)
    embedded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "memories"
        indexes = [models.Index(fields=["user", "character", "-created_at"], name="memory_owner_recent")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.text[:60]}"


class ForgottenMessage(models.Model):
    """A message a deleted memory came from, with the rest of its turn: no summary reads it again.

    Deleting a memory means "forget what I said there", not "forget this wording": a later session
    summary written from the same messages would bring the fact back, so they are left out of it.
    """

    message = models.OneToOneField(
        "conversations.Message", on_delete=models.CASCADE, primary_key=True, related_name="forgotten"
    )
    forgotten_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"forgotten: {self.message_id}"


class EmbeddingIndex(models.Model):
    """One embedding model version and its Chroma collection.

    Exactly one index is active (retrieval reads it). A re-embedding job builds a new one beside
    it; memories written meanwhile go to both; when it is complete it becomes active in one
    transaction and the old one is retired (kept, so queries already running still succeed).
    """

    class State(models.TextChoices):
        BUILDING = "building"
        ACTIVE = "active"
        RETIRED = "retired"

    model = models.CharField(max_length=300, help_text="A model name the workers know, or a local model directory.")
    version = models.PositiveIntegerField()
    collection = models.CharField(max_length=120, unique=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.BUILDING)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "embedding indexes"
        constraints = [
            models.UniqueConstraint(fields=["version"], name="index_version_unique"),
            models.UniqueConstraint(fields=["state"], condition=Q(state="active"), name="index_one_active"),
        ]

    def __str__(self) -> str:
        return f"{self.model} v{self.version} ({self.state})"


class Job(models.Model):
    """A recorded batch job (re-embedding every memory), with its progress; resumable and cancellable."""

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETE = "complete"
        FAILED = "failed"
        CANCELLED = "cancelled"

    kind = models.CharField(max_length=32, default="reembed")
    index = models.ForeignKey(EmbeddingIndex, on_delete=models.CASCADE, related_name="jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    total = models.PositiveIntegerField(default=0)  # memories in the chunks
    done = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} → {self.index} [{self.status} {self.done}/{self.total}]"

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0


class JobChunk(models.Model):
    """The memories one task re-embeds; `done` once their vectors are written."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    memory_ids = models.JSONField(default=list)
    size = models.PositiveIntegerField()
    done = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="chunk_number_unique")]
        indexes = [models.Index(fields=["job", "done"], name="chunk_job_done")]

    def __str__(self) -> str:
        return f"chunk {self.number} of job {self.job_id}"
