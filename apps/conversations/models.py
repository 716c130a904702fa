import uuid

from django.conf import settings
from django.db import models


class ChatSession(models.Model):
    """One conversation between a user and a character. Soft-deleted, never dropped."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions")
    character = models.ForeignKey("characters.Character", on_delete=models.PROTECT, related_name="sessions")
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # When the idle-session job last summed this session up into a memory.
    summarized_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-updated_at"], name="session_user_recent")]

    def __str__(self) -> str:
        return self.title or f"{self.character} · {self.created_at:%Y-%m-%d %H:%M}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        INTERRUPTED = "interrupted"
        FAILED = "failed"
        # A reply the user asked to write again (`regenerate`): kept, but out of prompts, lists and search.
        REPLACED = "replaced"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    emotion = models.CharField(max_length=24, default="neutral")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    # The user's utterance as WAV, when KEEP_AUDIO is on.
    audio = models.FileField(upload_to="utterances/%Y/%m/", blank=True)
    # Per-stage timings in ms, e.g. {"queue_ms": 3, "first_token_ms": 180, "llm_ms": 2400}.
    timings = models.JSONField(default=dict, blank=True)
    # The memories retrieved into the prompt of this reply (ids, best first).
    memories_used = models.JSONField(default=list, blank=True)
    # The character's lorebook entries put into the prompt of this reply (ids).
    lore_used = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=False)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["session", "created_at"], name="message_session_order")]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class AsrJob(models.Model):
    """A speech-to-text job of the REST API: an uploaded file transcribed on the `asr_api` queue.

    The row is the job's state for every process (the web process that took the upload, the worker,
    the one answering a status request): queued → running → done or failed.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="asr_jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    text = models.TextField(blank=True)
    language = models.CharField(max_length=16, blank=True)
    duration_s = models.FloatField(null=True, blank=True)  # of the audio
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="asrjob_user_recent")]
        verbose_name = "speech-to-text job"

    def __str__(self) -> str:
        return f"ASR job {self.pk} [{self.status}]"
