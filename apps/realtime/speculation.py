"""A spoken reply started on a partial transcript, before the user has finished (REPLY_ON_PARTIAL).

When a partial transcript that covers all the speech so far comes back at a pause, the socket
queues the reply to it (a draft user line, not saved) under a turn id of its own, and holds back
every frame and spoken unit its jobs send. When the user has finished, a final transcript that says
the same (case, punctuation and spacing aside) keeps it: the user's message is saved, the reply
confirmed, and what was held back is played at once. Speech that goes on past the partial, a final
transcript that differs, a stop, a hang-up or a closed socket cancel it: nothing of it is sent or
saved, and a dropped one counts as a restart in the reply's timings.

Mixed into the consumer with VoiceMixin.
"""

import time
import unicodedata
import uuid
from dataclasses import dataclass, field

from django.conf import settings

from apps.conversations.cancel import turn_cancel
from apps.core.dbasync import db_async
from apps.realtime import protocol as p
from apps.realtime import services
from apps.realtime.state import Partials, Turn

# Replies started per utterance at most: each costs an LLM job, and a client controls its pauses.
MAX_SPECULATIONS = 3


def transcript_normalize(text: str) -> str:
    """What a transcript says, for comparing two: casefolded, punctuation dropped, spaces collapsed."""
    kept = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text.casefold())
    return " ".join(kept.split())


@dataclass
class Speculation:
    """A reply started on a partial transcript of the utterance being captured, not yet confirmed."""

    id: str  # the reply's turn id, and its message id once kept
    partials: Partials  # of the utterance it answers
    covered: int  # bytes of the utterance the partial covered
    draft: str  # the partial transcript
    started_at: float = field(default_factory=time.time)
    held: list[dict] = field(default_factory=list)  # its turn.frames / turn.unit events, in arrival order


class SpeculationMixin:
    speculation: Speculation | None = None

    async def speculate(self, partials: Partials) -> None:
        """A partial transcript came back: start the reply on it if it covers all the speech so far."""
        draft = partials.final
        if (
            not settings.REPLY_ON_PARTIAL
            or self.turn is not None
            or not draft
            or not transcript_normalize(draft)
            or partials.speculated >= MAX_SPECULATIONS
        ):
            return
        if self.speculation is not None:  # one on an older partial: this one supersedes it
            await self.speculation_drop(restart=True)
        partials.speculated += 1
        self.speculation = spec = Speculation(
            id=str(uuid.uuid4()), partials=partials, covered=partials.heard, draft=draft
        )
        await db_async(services.voice_reply_submit)(
            conversation=self.conversation,
            turn_id=spec.id,
            draft=draft,
            reply_channel=self.channel_name,
            text_deltas=self.text_deltas,
            sample_rate=self.output_rate,
        )

    async def speculation_follow(self, partials: Partials) -> None:
        """The utterance grew: if speech went on past what the reply was started on, cancel it."""
        spec = self.speculation
        if spec is not None and spec.partials is partials and not partials.covers(spec.covered):
            await self.speculation_drop(restart=True)

    async def speculation_drop(self, *, restart: bool) -> None:
        """Cancel the reply started on a partial (if any): its jobs stop, nothing of it is sent or saved.

        `restart`: the user's turn goes on without it (counted in its timings), as opposed to the
        utterance being abandoned (stop, hang-up, a new stream, a closed socket).
        """
        spec, self.speculation = self.speculation, None
        if spec is None:
            return
        if restart:
            spec.partials.restarts += 1
        await db_async(turn_cancel)(turn_id=spec.id)

    def speculation_hold(self, turn_id: str, message: dict) -> bool:
        """Hold back an event of the reply started on a partial; True when it was one."""
        spec = self.speculation
        if spec is None or turn_id != spec.id:
            return False
        spec.held.append(message)
        return True

    def speculation_matches(self, partials: Partials | None) -> bool:
        """Whether the final transcript of this utterance (its covering partial) says what the reply
        started on said."""
        spec, final = self.speculation, partials.final if partials is not None else None
        return (
            spec is not None
            and spec.partials is partials
            and final is not None
            and transcript_normalize(final) == transcript_normalize(spec.draft)
        )

    async def speculation_keep(self, turn: Turn, pcm: bytes) -> None:
        """The user has finished and the final transcript confirms the reply: the turn is the reply's.

        The user's message is saved first, then the reply confirmed (its job saves it after), then
        what was held back is played at once, in order. If the job had already dropped it (it
        failed, or waited too long), the reply is queued anew.
        """
        spec = self.speculation
        text = spec.partials.final
        if spec.partials.asked:  # a partial still in flight is moot
            await db_async(turn_cancel)(turn_id=spec.partials.id)
        turn.id = spec.id
        self.begin_turn(turn)
        await self.send_frame(p.AsrStart())
        await self.send_frame(p.Transcription(text=text, is_partial=False))
        await self.send_frame(p.AsrEnd(text=text))
        kept = await db_async(services.voice_turn_keep)(
            conversation=self.conversation, turn_id=spec.id, text=text, pcm=pcm, speech_end_at=turn.speech_end_at
        )
        self.speculation = None
        if self.turn is not turn:  # ended meanwhile: that cancelled the reply (its id was the turn's)
            return
        await self.send_frame(p.Thinking())
        if not kept:
            await db_async(turn_cancel)(turn_id=spec.id)  # its TTS jobs still queued skip
            turn.restarts += 1
            turn.watchdog.cancel()
            turn.id = str(uuid.uuid4())
            self.begin_turn(turn)
            await db_async(services.voice_reply_submit)(
                conversation=self.conversation,
                turn_id=turn.id,
                reply_channel=self.channel_name,
                text_deltas=self.text_deltas,
                sample_rate=self.output_rate,
                speech_end_at=turn.speech_end_at,
            )
            return
        turn.reply_started_at = spec.started_at
        for message in spec.held:
            if self.turn is not turn:
                break
            if message["type"] == p.TurnUnit.model_fields["type"].default:
                await self.turn_unit(message)
            else:
                await self.turn_frames(message)
