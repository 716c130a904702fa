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
    description_in_prompt = models.BooleanField(
        default=False,
        help_text="Give the model the description too (a character card's description is its main definition).",
    )
    persona = models.TextField(
        blank=True,
        help_text="System prompt: who the character is and how it speaks. {{char}} and {{user}} are filled in.",
    )
    personality = models.TextField(blank=True, help_text="A short summary of the character's personality.")
    scenario = models.TextField(blank=True, help_text="Where and when the conversation takes place.")
    greeting = models.TextField(blank=True)
    alternate_greetings = models.JSONField(
        default=list, blank=True, help_text="Other opening lines from a character card (a list of text)."
    )
    example_dialogue = models.TextField(
        blank=True,
        help_text="Lines like 'User: …' and 'Character: …', one per line, to show its voice. Character cards' "
        "{{user}}: / {{char}}: lines and <START> separators are read too.",
    )
    post_history_instructions = models.TextField(
        blank=True, help_text="Instructions the model reads after the conversation, just before it replies."
    )
    avatar = models.ImageField(upload_to="avatars/", blank=True)
    language = models.CharField(max_length=16, default="en")
    tags = models.CharField(max_length=1000, blank=True, help_text="Comma-separated.")
    creator = models.TextField(blank=True, help_text="Who made the character (from its card).")
    creator_notes = models.TextField(blank=True, help_text="The creator's notes for people using the character.")
    character_version = models.TextField(blank=True)
    # What an imported character card had that no field holds (its extensions, fields of V3 and of other
    # tools, the lorebook's settings, the greeting as the card wrote it): written back by an export.
    card_data = models.JSONField(default=dict, blank=True, editable=False)
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


class LorebookEntry(models.Model):
    """A piece of background the character knows: its content joins the prompt of a turn whose recent
    messages mention one of its keys (a character card's lorebook, `character_book`, entry)."""

    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="lorebook_entries")
    comment = models.TextField(blank=True, help_text="A title for staff; never shown to the model.")
    name = models.TextField(blank=True)
    keys = models.JSONField(default=list, blank=True, help_text="Words that bring the entry into the prompt.")
    secondary_keys = models.JSONField(
        default=list, blank=True, help_text="With `selective`: one of these must appear as well."
    )
    content = models.TextField(blank=True, help_text="What the model is told. {{char}} and {{user}} are filled in.")
    enabled = models.BooleanField(default=True)
    constant = models.BooleanField(default=False, help_text="In every prompt, whatever was said.")
    selective = models.BooleanField(default=False, help_text="Needs a key and a secondary key.")
    case_sensitive = models.BooleanField(default=False)
    insertion_order = models.IntegerField(default=0, help_text="Lower comes first in the prompt.")
    priority = models.IntegerField(
        null=True, blank=True, help_text="When not all fit the lorebook's budget, the highest go in first."
    )
    position = models.CharField(
        max_length=32, blank=True, help_text="before_char or after_char: kept for export (the prompt puts lore last)."
    )
    extensions = models.JSONField(default=dict, blank=True)
    # The card's own entry id and the entry fields no field holds, written back by an export.
    card_data = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ["insertion_order", "pk"]
        verbose_name_plural = "lorebook entries"

    def __str__(self) -> str:
        return (self.comment or self.name or ", ".join(self.keys))[:80] or f"Entry {self.pk}"
