"""What /api/v1/ reads and writes: request bodies validated here (errors carry ErrorCode codes), and
the shapes of the answers (the OpenAPI schema is generated from these classes)."""

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError
from rest_framework.fields import empty

from apps.accounts.models import ApiToken
from apps.conversations.models import AsrJob, Message
from apps.conversations.reply import EMOTIONS
from apps.memory.models import Memory
from apps.realtime.protocol import ErrorCode

AUDIO_FORMATS = ("wav", "mp3", "ogg")

# Request text is taken as sent (`trim_whitespace=False`): a length limit then means what the schema's
# `maxLength` says. The services trim what they store (a title, a token's name, a search).


class CodedErrors:
    """A field whose DRF error codes are renamed to ours (`codes={"max_length": ErrorCode.TEXT_TOO_LONG}`)."""

    def __init__(self, *args, codes: dict[str, str], **kwargs):
        self.codes = codes
        super().__init__(*args, **kwargs)

    def run_validation(self, data=empty):
        try:
            return super().run_validation(data)
        except ValidationError as exc:
            details = exc.detail if isinstance(exc.detail, list) else [exc.detail]
            raise ValidationError(
                [
                    ErrorDetail(str(d), code=self.codes.get(getattr(d, "code", None), getattr(d, "code", None)))
                    for d in details
                ]
            ) from None


class JsonTyped:
    """A request body's field that takes only its own JSON type. DRF's fields coerce: a CharField turned
    a number into its digits (`"name": -36302` made a token named "-36302"), a BooleanField takes "yes"
    and 1, an IntegerField "5"; each hides a client's bug and breaks the schema the client was given.
    Anything else is refused as the field's `invalid` (the API's `invalid_field`). Not for query
    parameters, which are always strings."""

    json_types: tuple[type, ...] = (str,)

    def to_internal_value(self, data):
        # (bool is an int to Python, not to JSON)
        if isinstance(data, bool) != (bool in self.json_types) or not isinstance(data, self.json_types):
            self.fail("invalid")
        return super().to_internal_value(data)


class StringField(JsonTyped, serializers.CharField):
    json_types = (str,)


class JsonBooleanField(JsonTyped, serializers.BooleanField):
    json_types = (bool,)


class JsonIntegerField(JsonTyped, serializers.IntegerField):
    json_types = (int, float)  # 5.0 and 1e3 are integers to JSON Schema; 5.5 is not

    def to_internal_value(self, data):
        if isinstance(data, float) and data.is_integer():
            data = int(data)  # (DRF reads a number through its text, which 1e3 is not)
        return super().to_internal_value(data)


class JsonNumberField(JsonTyped, serializers.FloatField):
    json_types = (int, float)


class CodedCharField(CodedErrors, StringField):
    pass


class CodedChoiceField(CodedErrors, serializers.ChoiceField):
    pass


# --- characters and voices ------------------------------------------------------------------------


class VoiceSerializer(serializers.Serializer):
    name = serializers.CharField()
    engine = serializers.CharField()
    language = serializers.CharField()
    speed = serializers.FloatField()


class CharacterSerializer(serializers.Serializer):
    name = serializers.CharField(source="slug", help_text="The character's id: sessions and `/v1/` models use it.")
    display_name = serializers.CharField(source="name")
    description = serializers.CharField()
    greeting = serializers.CharField()
    language = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField(), source="tag_list")
    voice = serializers.CharField(source="voice.name", allow_null=True, default=None)
    avatar_url = serializers.SerializerMethodField()
    is_published = serializers.BooleanField(help_text="False only for drafts, which staff who edit characters see.")

    def get_avatar_url(self, character) -> str | None:
        request = self.context.get("request")
        if not character.avatar:
            return None
        return request.build_absolute_uri(character.avatar.url) if request else character.avatar.url


# --- sessions and messages ------------------------------------------------------------------------


class SessionMatchSerializer(serializers.Serializer):
    message_id = serializers.UUIDField(allow_null=True, help_text="The newest matching message; null: the title.")
    snippet = serializers.CharField(help_text="Text around the match.")
    at = serializers.DateTimeField(help_text="When that message was said (the title: when the session last changed).")


class SessionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    character = serializers.CharField(source="character_slug")
    character_name = serializers.CharField()
    title = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    last_message_at = serializers.DateTimeField()
    preview = serializers.CharField(allow_blank=True, help_text="The start of the last message.")
    match = SessionMatchSerializer(allow_null=True, default=None, help_text="Searches (`q`) only: where it matched.")


class SessionCreateSerializer(serializers.Serializer):
    character = StringField(
        max_length=64, trim_whitespace=False, help_text="The character's `name` (GET /api/v1/characters)."
    )


class SessionRenameSerializer(serializers.Serializer):
    title = StringField(max_length=200, allow_blank=True, trim_whitespace=False, help_text="Blank clears the title.")


class SessionListQuerySerializer(serializers.Serializer):
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        trim_whitespace=False,
        help_text="Only sessions whose title or a message contains this (any case), newest match first;"
        " blank: no search.",
    )


class MessageSerializer(serializers.ModelSerializer):
    memories_used = serializers.ListField(child=serializers.CharField(), help_text="Ids of memories in its prompt.")
    lore_used = serializers.ListField(
        child=serializers.IntegerField(), help_text="Ids of the character's lorebook entries in its prompt."
    )
    timings = serializers.DictField(help_text="Stage timings in ms (`first_token_ms`, `llm_ms`, `asr_ms`, …).")

    class Meta:
        model = Message
        fields = ("id", "role", "content", "emotion", "status", "timings", "memories_used", "lore_used", "created_at")


# --- speech ---------------------------------------------------------------------------------------


class TextToSpeechSerializer(serializers.Serializer):
    text = CodedCharField(
        max_length=settings.TTS_MAX_CHARS,
        trim_whitespace=False,
        codes={"max_length": ErrorCode.TEXT_TOO_LONG, "blank": ErrorCode.MISSING_FIELD},
        help_text="What to say (not only spaces).",
    )
    voice = StringField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=100,
        trim_whitespace=False,
        help_text="A voice's name (GET /api/v1/voices); none: the default voice.",
    )
    speed = JsonNumberField(required=False, default=1.0, min_value=0.25, max_value=4)
    emotion = serializers.ChoiceField(choices=EMOTIONS, required=False, default="neutral")
    format = CodedChoiceField(
        choices=AUDIO_FORMATS, required=False, default="wav", codes={"invalid_choice": ErrorCode.UNSUPPORTED_FORMAT}
    )
    sample_rate = JsonIntegerField(required=False, default=22050, min_value=8000, max_value=48000)

    def validate_text(self, text: str) -> str:
        if not text.strip():
            raise ValidationError("Say something: the text is only spaces.", code=ErrorCode.MISSING_FIELD)
        return text.strip()


class AsrJobErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class AsrJobSerializer(serializers.ModelSerializer):
    error = serializers.SerializerMethodField()

    class Meta:
        model = AsrJob
        fields = ("id", "status", "text", "language", "duration_s", "error", "created_at", "finished_at")

    @extend_schema_field(AsrJobErrorSerializer(allow_null=True))
    def get_error(self, job):
        """Why it failed (status `failed`), else null."""
        return {"code": job.error_code, "message": job.error_message} if job.error_code else None


# --- memories -------------------------------------------------------------------------------------


class MemorySerializer(serializers.ModelSerializer):
    character = serializers.CharField(source="character.slug")
    similarity = serializers.SerializerMethodField()

    class Meta:
        model = Memory
        fields = ("id", "text", "kind", "importance", "character", "created_at", "similarity")

    def get_similarity(self, memory) -> float | None:
        """Searches only: how close to the query (cosine, 1 is the same meaning)."""
        similarity = self.context.get("similarity", {}).get(memory.pk)
        return None if similarity is None else round(similarity, 4)


class MemoryListQuerySerializer(serializers.Serializer):
    character = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        trim_whitespace=False,
        help_text="Only this character's memories (blank: every character's).",
    )


class MemorySearchQuerySerializer(serializers.Serializer):
    character = serializers.CharField(
        max_length=64, trim_whitespace=False, help_text="Whose memories of you to search."
    )
    q = serializers.CharField(max_length=500, trim_whitespace=False, help_text="What to look for, by meaning.")
    limit = serializers.IntegerField(required=False, default=10, min_value=1, max_value=50)


class MemorySearchResultSerializer(serializers.Serializer):
    results = MemorySerializer(many=True)


# --- API tokens -----------------------------------------------------------------------------------


class TokenSerializer(serializers.ModelSerializer):
    prefix = serializers.CharField(help_text="The key's first characters, to tell keys apart; never the key.")

    class Meta:
        model = ApiToken
        fields = ("id", "name", "prefix", "created_at", "last_used_at")


class TokenCreateSerializer(serializers.Serializer):
    name = StringField(
        max_length=100, trim_whitespace=False, help_text="What the key is for, to recognise it later (not only spaces)."
    )

    def validate_name(self, name: str) -> str:
        if not name.strip():
            raise ValidationError("Name the token: the name is only spaces.", code="blank")
        return name.strip()


class TokenCreatedSerializer(serializers.Serializer):
    """A token just created (an `IssuedToken`): its fields and, this once, its key."""

    id = serializers.IntegerField(source="token.pk")
    name = serializers.CharField(source="token.name")
    prefix = serializers.CharField(source="token.prefix")
    created_at = serializers.DateTimeField(source="token.created_at")
    last_used_at = serializers.DateTimeField(source="token.last_used_at", allow_null=True)
    key = serializers.CharField(help_text="The key itself: shown this once, never again. Send it as `Bearer <key>`.")
