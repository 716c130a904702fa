from django.db import models


class Voice(models.Model):
    """A TTS voice staff can give to characters (engines arrive with the voice issue)."""

    name = models.CharField(max_length=100, unique=True)
    engine = models.CharField(max_length=30, default="piper")
    model = models.CharField(max_length=200, blank=True, help_text="Model file or name for the engine.")
    speaker = models.CharField(max_length=100, blank=True)
    language = models.CharField(max_length=16, default="en")
    speed = models.FloatField(default=1.0)

    def __str__(self) -> str:
        return self.name


class Character(models.Model):
    """A curated persona people talk with. Only published characters are visible to users."""

    name = models.CharField(max_length=100, help_text="Display name shown to users.")
    slug = models.SlugField(max_length=64, unique=True, help_text="Stable id clients connect with (`character_name`).")
    description = models.TextField(blank=True)
    persona = models.TextField(help_text="System prompt: who the character is and how it speaks.")
    greeting = models.TextField(blank=True)
    example_dialogue = models.TextField(
        blank=True, help_text="Lines like 'User: …' and 'Character: …', one per line, to show its voice."
    )
    avatar = models.ImageField(upload_to="avatars/", blank=True)
    language = models.CharField(max_length=16, default="en")
    tags = models.CharField(max_length=200, blank=True, help_text="Comma-separated.")
    voice = models.ForeignKey(Voice, null=True, blank=True, on_delete=models.SET_NULL, related_name="characters")
    is_published = models.BooleanField(default=False, db_index=True)
    # The greeting spoken in the character's voice, rendered ahead of time by a batch job (WAV), and
    # the key (greeting text + voice) it was rendered from: a different key means stale, re-rendered.
    greeting_audio = models.FileField(upload_to="greetings/", blank=True, editable=False)
    greeting_audio_key = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def tag_list(self) -> list[str]:
        return [t.strip() for t in self.tags.split(",") if t.strip()]
