"""Voice on the conversation socket: whole utterances, push-to-talk streams and hands-free calls.

Mixed into the consumer. Voice activity detection runs here, per frame, at the edge; transcription,
the reply and speech run on the asr, llm and tts queues and come back as channel-layer events.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from apps.conversations.cancel import turn_cancel
from apps.conversations.services import turn_timings_merge
from apps.core import metrics
from apps.core.audio import PCM_RATE, AudioError, b64decode_audio, container_of, pcm_check, pcm_from_base64, probe
from apps.core.dbasync import db_async
from apps.realtime import protocol as p
from apps.realtime import services
from apps.realtime.state import AudioBudget, AudioIn, ClientError, Partials, Turn
from apps.realtime.vad import Fed, StreamingVad

_PREROLL_BYTES = int(0.3 * PCM_RATE) * 2  # audio kept from before speech was detected
_PARTIAL_WAIT_S = 3.0  # how long a finished utterance waits for the partial that covers it


class Call:
    """A hands-free call: VAD state plus the utterance being captured.

    Frames wait in `inbox` for the call's feeder task, which runs all those that came meanwhile
    through the VAD in one go: a socket's frames are read one after another, and when each waited for
    its own trip to the VAD's thread, a busy process's calls fell behind real time (at 500 sockets
    with 20 calls on the 2-core box, 20 of ~120 utterances were heard in 40 s).
    """

    def __init__(self):
        self.vad = StreamingVad.from_settings()
        self.audio = AudioIn()
        self.preroll = bytearray()
        self.inbox: list[bytes] = []
        self.feeder: asyncio.Task | None = None


@dataclass
class Pending:
    """A finished utterance waiting for the partial transcript in flight, which covers all its speech."""

    turn: Turn
    pcm: bytes
    partials: Partials


class VoiceMixin:
    output_rate = PCM_RATE
    stream: AudioIn | None = None
    audio_budget: AudioBudget | None = None  # the socket's, shared by its streams and calls
    stream_vad: StreamingVad | None = None  # tracks where speech is, for partial transcripts
    call: Call | None = None
    partials: Partials | None = None  # of the utterance being captured
    pending: Pending | None = None
    playing: Turn | None = None  # the last spoken reply, while the client may still be playing it

    def voice_handlers(self) -> dict:
        return {
            "audio_message": self.on_audio_message,
            "audio_stream_start": self.on_audio_stream_start,
            "audio_stream_chunk": self.on_audio_stream_chunk,
            "audio_stream_end": self.on_audio_stream_end,
            "voice_call_start": self.on_voice_call_start,
            "agent_mode_start": self.on_voice_call_start,
            "voice_call_audio_chunk": self.on_voice_call_audio_chunk,
            "agent_audio_chunk": self.on_voice_call_audio_chunk,
            "voice_call_stop": self.on_voice_call_stop,
            "agent_mode_stop": self.on_voice_call_stop,
        }

    # --- client frames -----------------------------------------------------------------------

    async def on_audio_message(self, frame: p.AudioMessage):
        """A whole utterance: raw PCM, or a file whose header is measured here and decoded by the ASR job."""
        data = _decode(b64decode_audio, frame.audio_base64)
        container = container_of(data)
        if container is None:
            if len(data) > AudioIn.max_bytes():
                raise ClientError(p.ErrorCode.UTTERANCE_TOO_LONG, "The utterance is too long.")
            _decode(pcm_check, data)
        else:  # never decoded in this process: a few header reads, then the bytes go on by id
            _decode(lambda d: probe(d, max_s=settings.AUDIO_MAX_UTTERANCE_S), data)
        await self.start_voice_turn(data, speech_end_at=time.time(), container=container)

    async def on_audio_stream_start(self, frame):
        await self.speculation_drop(restart=False)  # a new stream abandons the one before
        self.stream, self.stream_vad, self.partials = AudioIn(), StreamingVad.from_settings(), Partials()
        await self.send_frame(p.AudioStreamStarted())

    async def on_audio_stream_chunk(self, frame: p.AudioStreamChunk):
        await self.stream_audio(_decode(pcm_from_base64, frame.audio_base64))

    async def stream_audio(self, pcm: bytes):
        if self.stream is None:
            raise ClientError(p.ErrorCode.NO_STREAM, "Send `audio_stream_start` first.")
        self.audio_admit(pcm)
        self.stream.buffer += pcm
        if len(self.stream.buffer) > AudioIn.max_bytes():
            self.stream = None
            raise ClientError(p.ErrorCode.UTTERANCE_TOO_LONG, "The utterance is too long; it was dropped.")
        await self.stream_vad.feed_async(pcm)
        await self.track_partials(self.stream.buffer, self.stream_vad.quiet_ms)

    async def on_audio_stream_end(self, frame):
        if self.stream is None:
            raise ClientError(p.ErrorCode.NO_STREAM, "Send `audio_stream_start` first.")
        pcm, self.stream = bytes(self.stream.buffer), None
        partials, self.partials = self.partials, None
        await self.start_voice_turn(pcm, speech_end_at=time.time(), partials=partials)

    async def on_voice_call_start(self, frame):
        self.call = Call()
        await self.send_frame(p.VoiceCallListening())
        greeting = await db_async(services.greeting_frames)(
            conversation=self.conversation, sample_rate=self.output_rate
        )
        for greeting_frame in greeting:  # a new session: the character speaks first, at once
            await self.send_frame(greeting_frame)

    async def on_voice_call_audio_chunk(self, frame: p.VoiceCallAudioChunk):
        await self.call_audio(_decode(pcm_from_base64, frame.audio_base64))

    async def on_voice_call_stop(self, frame):
        if self.call is None:
            raise ClientError(p.ErrorCode.NO_CALL, "No call is running.")
        self.call, self.partials = None, None
        await self.end_turn(cancel=True)  # also drops a reply started on a partial

    async def on_binary(self, data: bytes):
        """Raw PCM frames: the cheaper alternative to base64 chunks."""
        pcm = _decode(pcm_check, data)
        if self.call is not None:
            await self.call_audio(pcm)
        elif self.stream is not None:
            await self.stream_audio(pcm)
        else:
            raise ClientError(p.ErrorCode.BINARY_NOT_EXPECTED, "Binary PCM frames belong to a stream or a call.")

    def audio_admit(self, pcm: bytes) -> None:
        """Check a chunk against the socket's audio allowance (raises ClientError)."""
        if self.audio_budget is None:
            self.audio_budget = AudioBudget()
        self.audio_budget.admit(pcm)

    # --- the call: VAD at the edge, barge-in -------------------------------------------------

    async def call_audio(self, pcm: bytes):
        call = self.call
        if call is None:
            raise ClientError(p.ErrorCode.NO_CALL, "Send `voice_call_start` first.")
        self.audio_admit(pcm)
        call.inbox.append(pcm)
        if call.feeder is None or call.feeder.done():
            call.feeder = asyncio.create_task(self.guarded(self.call_feed(call), "voice call audio"))

    async def call_feed(self, call: Call):
        """Run the call's waiting frames through its VAD, then act on each as it would have alone."""
        while call.inbox and self.call is call:
            frames, call.inbox = call.inbox, []
            vad = call.vad
            for i, (pcm, fed) in enumerate(zip(frames, await vad.feed_frames_async(frames), strict=True)):
                if self.call is not call or self.ended:
                    return
                try:
                    await self.call_frame(call, pcm, fed)
                except ClientError as exc:
                    await self.client_error(exc)
                    if exc.close_code:
                        return
                if call.vad is not vad:  # started afresh (the utterance was too long): it hears the rest
                    call.inbox[:0] = frames[i + 1 :]
                    break

    async def call_frame(self, call: Call, pcm: bytes, fed: Fed):
        if fed.in_speech or fed.events:
            call.audio.buffer += pcm
        else:
            call.preroll = (call.preroll + pcm)[-_PREROLL_BYTES:]
        for event in fed.events:
            if event.kind == "speech_start":
                call.audio.buffer = call.preroll + call.audio.buffer
                call.preroll = bytearray()
                self.partials = Partials()
                await self.barge_in()
            elif event.kind == "speech_end":
                # Audio heard since the speech ended: what the VAD made the caller wait (at real time).
                heard_ms = fed.position_ms - event.at_ms
                metrics.stage_observe(metrics.VAD_END, engine="silero", seconds=heard_ms / 1000, queue=metrics.EDGE)
                utterance, call.audio.buffer = bytes(call.audio.buffer), bytearray()
                partials, self.partials = self.partials, None
                await self.start_voice_turn(utterance, speech_end_at=time.time(), partials=partials)
        if fed.in_speech:
            await self.track_partials(call.audio.buffer, fed.quiet_ms)
        if fed.in_speech and len(call.audio.buffer) > AudioIn.max_bytes():
            await self.speculation_drop(restart=False)
            call.audio.buffer = bytearray()
            call.vad = StreamingVad.from_settings()
            raise ClientError(
                p.ErrorCode.UTTERANCE_TOO_LONG, "You spoke too long without a pause; that part was dropped."
            )

    async def barge_in(self):
        """The user talks over the character: stop its jobs, stop playback, keep what was said.

        The character is talking while its turn runs, and after it until the audio sent has had
        time to play.
        """
        playing, self.playing = self.playing, None
        if self.turn is not None:
            await self.send_frame(p.Interrupted())
            await self.end_turn(cancel=True)
        elif playing is not None and time.time() < playing.playback_end:
            await self.send_frame(p.Interrupted())
            await db_async(services.turn_mark_interrupted)(turn=playing, now=time.time())

    # --- voice turns -------------------------------------------------------------------------

    async def start_voice_turn(
        self, pcm: bytes, *, speech_end_at: float, partials: Partials | None = None, container: str | None = None
    ):
        """`partials`: those of the stream or call utterance `pcm` is (None for a whole-file message).

        `container`: `pcm` is a file of that container (probed, not decoded), for the ASR job to decode.
        """
        keep = self.speculation_matches(partials)
        try:
            if not pcm:
                raise ClientError(p.ErrorCode.EMPTY_AUDIO, "The utterance has no audio.")
            if self.turn is not None:
                raise ClientError(p.ErrorCode.TURN_IN_PROGRESS, "Wait for `turn_end` before the next utterance.")
            await self.quota_take("turn")
        except ClientError:
            await self.speculation_drop(restart=False)
            raise
        if not keep:  # a reply started on a partial that the final transcript does not confirm
            spec = self.speculation
            await self.speculation_drop(restart=spec is not None and spec.partials is partials)
        turn = Turn(str(uuid.uuid4()), self.conversation.session.pk, voice=True, speech_end_at=speech_end_at)
        turn.restarts = partials.restarts if partials is not None and partials.speculated else None
        if keep:
            return await self.speculation_keep(turn, pcm)
        self.begin_turn(turn)
        await self.send_frame(p.AsrStart())
        if partials is not None and partials.final is None and partials.awaited:
            self.pending = pending = Pending(turn, pcm, partials)
            asyncio.create_task(self.guarded(self.pending_expire(pending), "partial wait", turn_id=turn.id))
            return
        await self.submit_voice_turn(turn, pcm, partials, container)

    async def submit_voice_turn(self, turn: Turn, pcm: bytes, partials: Partials | None, container: str | None = None):
        """Queue the final transcription, or skip it when a partial transcript covered all the speech."""
        if partials is not None and partials.asked:
            await db_async(turn_cancel)(turn_id=partials.id)  # the partial in flight is moot
        await db_async(services.voice_turn_submit)(
            conversation=self.conversation,
            turn_id=turn.id,
            pcm=pcm,
            reply_channel=self.channel_name,
            text_deltas=self.text_deltas,
            sample_rate=self.output_rate,
            speech_end_at=turn.speech_end_at,
            transcript=partials.final if partials is not None else None,
            container=container,
        )

    async def pending_expire(self, pending: Pending):
        """The partial never came back (its worker died?): transcribe the utterance the usual way."""
        await asyncio.sleep(_PARTIAL_WAIT_S)
        if self.pending is pending:
            self.pending = None
            if self.turn is pending.turn:
                pending.partials.answer(0, "")
                await self.submit_voice_turn(pending.turn, pending.pcm, pending.partials)

    # --- partial transcripts -----------------------------------------------------------------

    async def track_partials(self, buffer: bytearray, quiet_ms: float):
        partials = self.partials
        if partials is None:
            return
        asking = partials.track(len(buffer), quiet_ms)
        await self.speculation_follow(partials)
        if asking:
            partials.ask(len(buffer))
            await sync_to_async(services.partial_request, thread_sensitive=False)(
                partial_id=partials.id, pcm=bytes(buffer), reply_channel=self.channel_name
            )

    async def asr_partial(self, message):
        """A partial transcript from the ASR queue: show it, or let the utterance waiting for it go on."""
        event = p.AsrPartialResult.model_validate(message)
        pending = self.pending
        if pending is not None and event.partial_id == pending.partials.id:
            self.pending = None
            pending.partials.answer(event.covered, event.text)
            if self.turn is pending.turn:
                await self.submit_voice_turn(pending.turn, pending.pcm, pending.partials)
            return
        partials = self.partials
        if partials is None or event.partial_id != partials.id:
            return
        partials.answer(event.covered, event.text)
        if event.text:
            await self.send_frame(p.Transcription(text=event.text, is_partial=True))
            await self.speculate(partials)

    async def turn_unit(self, message):
        """One piece of a spoken unit from a TTS job; units are played strictly in order."""
        event = p.TurnUnit.model_validate(message)
        if self.speculation_hold(event.turn_id, message):
            return
        turn = self.turn
        if turn is None or not turn.voice or event.turn_id != turn.id:
            return
        turn.last_event = time.monotonic()
        turn.waiting.setdefault(event.seq, []).append(event)
        while turn.next_seq in turn.waiting:
            pieces = turn.waiting.pop(turn.next_seq)
            done = False
            for piece in pieces:
                await self.play(turn, piece.frames)
                done = done or piece.last
            if not done:
                turn.waiting[turn.next_seq] = []  # more of this unit is coming
                break
            turn.waiting.pop(turn.next_seq, None)
            turn.next_seq += 1
        await self.maybe_finish_voice_turn(turn)

    async def play(self, turn: Turn, frames: list[p.ServerFrame]):
        for frame in frames:
            if isinstance(frame, p.TtsStart):
                turn.units.append((turn.audio_s, frame.text))
            elif isinstance(frame, p.AudioChunk):
                turn.last_audio_at = time.time()
                if turn.first_audio_at is None:
                    turn.first_audio_at = turn.last_audio_at
                    metrics.stage_observe(
                        metrics.VOICE_TO_VOICE,
                        engine=settings.LLM_BACKEND,
                        seconds=turn.first_audio_at - turn.speech_end_at,
                        queue=metrics.EDGE,
                    )
                turn.audio_s += len(frame.audio_base64) * 3 / 4 / 2 / frame.audio_sample_rate
            await self.send_frame(frame)

    async def maybe_finish_voice_turn(self, turn: Turn):
        if self.turn is turn and turn.all_units_sent:
            await self.send_frame(p.AudioEnd())
            await db_async(turn_timings_merge)(turn_id=turn.id, timings=turn.audio_timings())
            self.playing = turn
            await self.finish_turn(turn, status="failed" if turn.failed and not turn.units else "complete")


def _decode(fn, data):
    """Run an audio decoder, turning its AudioError into a ClientError with the same code."""
    try:
        return fn(data)
    except AudioError as exc:
        raise ClientError(exc.code, exc.message) from None
