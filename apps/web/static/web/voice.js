// Voice on the chat page: push-to-talk (hold the button or the space bar) and a hands-free call over
// the page's socket (docs/protocol.md), the microphone captured by an AudioWorklet (capture-worklet.js:
// 16 kHz s16le frames sent as binary WebSocket frames) and the reply played gaplessly (playback.js).
//
// window.ptVoice is the page's voice state for tests and bench/browser_voice.py (a fixed contract):
// {state, activeSources, turns: [{mode, speechEndAt, transcript, partials, firstAudioAt,
// firstAudioStartsAt, chunks, replyDoneAt, replyText, interrupted, status}], greeting: {chunks, stopped}}.
// Also (for tests): micOpenedAt (when the microphone stream opened), interruptions: [{at, by, stopped,
// turnChunks}] and each turn's llmEndAt, endSentAt (push-to-talk: audio_stream_end sent), flushedBy
// ("worklet" when the microphone's last samples came back in time, "timeout" after 200 ms) and
// firstChunkAt (the first audio_chunk received, before it was decoded and scheduled). Times are performance.now() milliseconds. End of speech: push-to-talk, the moment the button (or
// space bar) is released; in a call, when the page sent the last frame above SPEECH_LEVEL before
// the server's `asr_start` (the server's VAD decides the utterance ended a few hundred ms later:
// that wait is part of what the user feels, so it is counted).

import { Player } from "./playback.js";

const FRAME_MS = 20;
const SPEECH_LEVEL = 0.02; // RMS of a frame that counts as the user speaking
const SPEECH_FRAMES = 5; // that many loud frames in a row (100 ms) talk over the greeting
const STATES = {
  idle: "Voice: idle",
  listening: "Listening…",
  thinking: "Thinking…",
  speaking: "Speaking",
  interrupted: "Interrupted",
};

const $ = (id) => document.getElementById(id);

export function createVoice({ send, sendBinary, history, addMessage, changed }) {
  const talk = $("talk");
  const call = $("call");
  const badge = $("voice-state");
  const level = $("level");
  const picker = $("mic");
  const muteWhileSpeaking = $("mute-while-speaking");
  const problem = $("voice-problem");

  const pt = { state: "idle", activeSources: 0, turns: [], greeting: null, micOpenedAt: null, interruptions: [] };
  window.ptVoice = pt;

  let ctx = null;
  let player = null;
  let mic = null; // {stream, source, node}
  let micReady = null; // the promise of `mic` while it is being opened
  let workletLoaded = null; // the capture module, added to the context once
  let connected = false;
  let mode = null; // "ptt" while the button is held, "call" during a call
  let releasing = null; // the push-to-talk release in progress (a promise)
  let next = null; // the utterance being captured (push-to-talk: from the press; a call: its first partial)
  let turn = null; // the voice turn the server runs (from asr_start to turn_end): an object of pt.turns
  let inTurn = false; // between asr_start/thinking and turn_end (a typed message's turn too)
  let playing = null; // whose audio was scheduled last: a turn of pt.turns, or "greeting"
  let dropAudio = false; // the current turn was interrupted: its late chunks are not played
  let forming = null; // the user's message being formed from partial transcripts
  let greetingPlaying = false;
  let loudFrames = 0;
  let lastLoudSentAt = null;
  let callStarted = false; // voice_call_start was sent (and the call not hung up)
  let cancelled = false; // a push-to-talk stream ended empty because the microphone failed

  function setState(state) {
    pt.state = state;
    badge.dataset.state = state;
    badge.textContent = STATES[state];
    changed();
  }

  function syncSources() {
    pt.activeSources = player ? player.active : 0;
  }

  function say(text, code) {
    const p = document.createElement("p");
    p.dataset.code = code;
    p.textContent = text;
    problem.replaceChildren(p);
  }

  function updateControls() {
    talk.disabled = !connected || mode === "call";
    call.disabled = !connected || mode === "ptt";
    call.textContent = mode === "call" ? "Hang up" : "Start a call";
    call.setAttribute("aria-pressed", String(mode === "call"));
    talk.setAttribute("aria-pressed", String(mode === "ptt"));
  }

  // --- audio graph ------------------------------------------------------------------------

  // Inside the user's gesture: the context is created (at the device's rate) and resumed there.
  function ensureContext() {
    if (!ctx) {
      ctx = new AudioContext();
      player = new Player(ctx);
      player.onidle = () => {
        syncSources();
        changed();
        greetingPlaying = false;
        if (pt.state === "speaking") setState(mode ? "listening" : "idle");
      };
    }
    if (ctx.state === "suspended") ctx.resume();
    return ctx;
  }

  // A failure to open the microphone: [message, code] from micProblem, or anything else thrown.
  function report(failure) {
    const [text, code] = Array.isArray(failure) ? failure : micProblem(failure);
    say(text, code);
  }

  function micProblem(error) {
    if (!window.isSecureContext || !navigator.mediaDevices) {
      return [
        "The microphone only works on a secure page: open this site over HTTPS (or at localhost on this computer).",
        "insecure_origin",
      ];
    }
    const name = error && error.name;
    if (name === "NotAllowedError" || name === "SecurityError") {
      return [
        "Microphone access was denied. Allow it for this site in the browser's settings (the icon left of the address), then try again.",
        "mic_denied",
      ];
    }
    if (name === "NotFoundError" || name === "OverconstrainedError") {
      return ["No microphone was found. Connect one (or pick another below) and try again.", "mic_missing"];
    }
    if (name === "NotReadableError") {
      return ["The microphone is in use by another program or could not be started.", "mic_busy"];
    }
    return [`The microphone could not be opened (${name || "unknown error"}).`, "mic_failed"];
  }

  async function openMic() {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw micProblem(null);
    }
    const audio = { echoCancellation: true, noiseSuppression: true, channelCount: 1 };
    if (picker.value) audio.deviceId = { exact: picker.value };
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio });
    } catch (error) {
      throw micProblem(error);
    }
    workletLoaded = workletLoaded || ctx.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
    try {
      await workletLoaded;
    } catch (error) {
      workletLoaded = null; // try again next time (a dropped connection, say)
      stream.getTracks().forEach((track) => track.stop());
      throw error;
    }
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "pt-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 0, // a sink: rendered without being connected to the speakers
      processorOptions: { frameMs: FRAME_MS },
    });
    node.port.onmessage = (event) => onCaptured(event.data);
    source.connect(node);
    pt.micOpenedAt = performance.now();
    problem.replaceChildren();
    fillPicker().catch(() => {}); // the picker keeps its default entry
    return { stream, source, node };
  }

  function ensureMic() {
    if (mic) return Promise.resolve(mic);
    if (!micReady) {
      micReady = openMic().then(
        (opened) => {
          mic = opened;
          micReady = null;
          return mic;
        },
        (failure) => {
          micReady = null;
          throw failure;
        },
      );
    }
    return micReady;
  }

  function closeMic() {
    if (!mic) return;
    mic.source.disconnect();
    mic.node.port.onmessage = null;
    mic.stream.getTracks().forEach((track) => track.stop());
    mic = null;
    level.value = 0;
  }

  async function fillPicker() {
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
    const chosen = picker.value || (mic && mic.stream.getAudioTracks()[0].getSettings().deviceId) || "";
    const options = devices.map((d, i) => {
      const option = document.createElement("option");
      option.value = d.deviceId;
      option.textContent = d.label || `Microphone ${i + 1}`;
      return option;
    });
    if (!options.length) return;
    picker.replaceChildren(...options);
    if (chosen && devices.some((d) => d.deviceId === chosen)) picker.value = chosen;
    picker.disabled = false;
  }

  picker.addEventListener("change", async () => {
    if (!mic) return;
    closeMic(); // the next frames come from the device picked
    try {
      await ensureMic();
    } catch (failure) {
      report(failure);
    }
  });

  // A frame from the worklet: send it while talking, meter it always.
  function onCaptured(data) {
    if (data.flushed) {
      if (releasing && releasing.resolve) releasing.resolve();
      return;
    }
    level.value = Math.min(1, data.rms * 4);
    const loud = data.rms >= SPEECH_LEVEL;
    loudFrames = loud ? loudFrames + 1 : 0;
    if (mode === "call" && greetingPlaying && loudFrames >= SPEECH_FRAMES && !muteWhileSpeaking.checked) {
      // The server sends no `interrupted` for the greeting: the page stops it when the user talks
      // (not when the mic is muted while the character speaks: what it hears may be the speakers).
      const stopped = player.stopAll();
      syncSources();
      greetingPlaying = false;
      pt.interruptions.push({ at: performance.now(), by: "speech", stopped });
      if (pt.greeting) pt.greeting.stopped = true;
      setState("listening");
    }
    if (!mode || !connected) return;
    let pcm = data.pcm;
    if (mode === "call" && muteWhileSpeaking.checked && player.active) {
      pcm = new ArrayBuffer(pcm.byteLength); // silence: the server's VAD must not hear the character
    } else if (loud && mode === "call") {
      lastLoudSentAt = performance.now();
    }
    sendBinary(pcm);
  }

  // --- interruptions ----------------------------------------------------------------------

  // Stops every scheduled source; the voice turn running, or the one (or the greeting) whose audio
  // was still playing, is marked interrupted, and chunks that still come for it are dropped.
  function stopPlayback({ by = "user" } = {}) {
    const stopped = player ? player.stopAll() : 0;
    syncSources();
    greetingPlaying = false;
    const heard = stopped ? playing : null;
    if (heard === "greeting" && pt.greeting) pt.greeting.stopped = true;
    const target = turn || (heard !== "greeting" ? heard : null);
    if (stopped || by === "server") {
      pt.interruptions.push({ at: performance.now(), by, stopped, turnChunks: target ? target.chunks : 0 });
    }
    if (target) target.interrupted = true;
    if (turn || stopped) dropAudio = true;
    changed();
    return stopped;
  }

  // The user's Stop/interrupt button (chat.js sends `stop`).
  function interrupt() {
    const stopped = stopPlayback();
    if (stopped || turn) setState("interrupted");
  }

  // --- push-to-talk -----------------------------------------------------------------------

  async function press() {
    if (mode || !connected) return;
    ensureContext();
    if (inTurn || (player && player.active)) {
      stopPlayback({ by: "ptt" });
      send({ type: "stop" }); // a reply still running or playing: the server interrupts it
    }
    mode = "ptt";
    next = newTurn("ptt");
    setState("listening");
    updateControls();
    send({ type: "audio_stream_start" });
    try {
      await ensureMic();
    } catch (failure) {
      report(failure);
      mode = null;
      pt.turns.splice(pt.turns.indexOf(next), 1);
      next = null;
      setState("idle");
      updateControls();
      cancelled = true;
      send({ type: "audio_stream_end" }); // closes the stream; its empty_audio error is not news
    }
  }

  async function release() {
    if (mode !== "ptt" || releasing) return;
    const speechEndAt = performance.now();
    if (next) next.speechEndAt = speechEndAt;
    releasing = { resolve: null };
    if (micReady) {
      try {
        await micReady;
      } catch {
        releasing = null;
        return; // press() reports it
      }
    }
    if (mic) {
      const flushed = new Promise((resolve) => (releasing.resolve = () => resolve("worklet")));
      mic.node.port.postMessage("flush"); // the samples of the frame being filled go now
      const by = await Promise.race([flushed, new Promise((resolve) => setTimeout(() => resolve("timeout"), 200))]);
      if (next) next.flushedBy = by;
    }
    releasing = null;
    mode = null;
    send({ type: "audio_stream_end" });
    if (next) next.endSentAt = performance.now();
    setState("thinking");
    updateControls();
  }

  talk.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    talk.setPointerCapture(event.pointerId);
    press();
  });
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) talk.addEventListener(type, release);
  talk.addEventListener("contextmenu", (event) => event.preventDefault()); // a long press on a phone

  function spaceTalks(event) {
    const target = event.target;
    if (event.code !== "Space" || event.ctrlKey || event.altKey || event.metaKey) return false;
    if (target === talk) return true;
    // Space keeps its own meaning on every other control (typing, pressing, toggling, opening).
    const control = "button, a[href], input, textarea, select, summary, [contenteditable], [role=button]";
    return !(target instanceof Element && target.closest(control));
  }

  document.addEventListener("keydown", (event) => {
    if (!spaceTalks(event)) return;
    event.preventDefault();
    if (!event.repeat && !talk.disabled) press();
  });
  document.addEventListener("keyup", (event) => {
    if (!spaceTalks(event)) return;
    event.preventDefault();
    release();
  });
  // Enter on the focused button holds nothing: keyboard users hold the space bar.

  // --- the call ---------------------------------------------------------------------------

  call.addEventListener("click", async () => {
    if (mode === "call") {
      hangUp();
      return;
    }
    if (mode || !connected) return;
    ensureContext();
    mode = "call";
    updateControls();
    setState("listening");
    try {
      await ensureMic();
    } catch (failure) {
      report(failure);
      mode = null;
      setState("idle");
      updateControls();
      return;
    }
    if (mode !== "call") return; // hung up while the microphone opened
    lastLoudSentAt = null;
    callStarted = true;
    send({ type: "voice_call_start" });
  });

  function hangUp() {
    mode = null;
    if (connected && callStarted) send({ type: "voice_call_stop" });
    callStarted = false;
    stopPlayback();
    setState("idle");
    updateControls();
  }

  // --- turns ------------------------------------------------------------------------------

  function newTurn(kind) {
    const t = {
      mode: kind,
      speechEndAt: null,
      transcript: null,
      partials: 0,
      firstAudioAt: null,
      firstAudioStartsAt: null,
      chunks: 0,
      replyDoneAt: null,
      llmEndAt: null,
      endSentAt: null,
      flushedBy: null,
      firstChunkAt: null,
      replyText: "",
      interrupted: false,
      status: null,
      messageId: null,
    };
    pt.turns.push(t);
    return t;
  }

  function userText(text) {
    if (!forming) {
      forming = addMessage("user", "");
      forming.element.classList.add("forming");
    }
    forming.text.textContent = text;
    history.scrollTop = history.scrollHeight;
  }

  function ms(value) {
    return `${Math.round(value)} ms`;
  }

  // The optional detail under a spoken reply: the page's own measure, then the server's stages.
  function addLatency(element, t) {
    const details = document.createElement("details");
    details.className = "latency";
    const summary = document.createElement("summary");
    summary.textContent = "Latency";
    const list = document.createElement("dl");
    const row = (name, value) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      list.append(dt, dd);
    };
    if (t.speechEndAt !== null && t.firstAudioAt !== null) {
      row(t.mode === "ptt" ? "Release → first audio scheduled" : "End of speech → first audio scheduled", ms(t.firstAudioAt - t.speechEndAt));
      row("… → first audio heard", ms(t.firstAudioStartsAt - t.speechEndAt));
    }
    details.append(summary, list);
    element.append(details);
    if (!t.messageId) return;
    // The server's stages are fetched when the detail is first opened (most people never do).
    details.addEventListener(
      "toggle",
      async () => {
        try {
          const response = await fetch(`/messages/${encodeURIComponent(t.messageId)}/timings`, {
            headers: { Accept: "application/json" },
            credentials: "same-origin",
          });
          if (!response.ok) return;
          const data = await response.json();
          for (const [part, timings] of [["Transcription", data.utterance], ["Reply", data.reply]]) {
            for (const [stage, value] of Object.entries(timings || {})) {
              if (typeof value === "number") row(`${part}: ${stage.replace(/_/g, " ")}`, ms(value));
            }
          }
        } catch {
          // the detail is optional: the page's own measure stays
        }
      },
      { once: true },
    );
  }

  const handlers = {
    connected() {
      connected = true;
      updateControls();
    },
    voice_call_listening() {
      if (mode === "call" && !inTurn && pt.state !== "speaking") setState("listening");
    },
    transcription(frame) {
      if (frame.is_partial) {
        if (!next) next = newTurn(mode === "call" ? "call" : "ptt");
        next.partials += 1;
      } else if (turn) {
        turn.transcript = frame.text;
      }
      if (frame.text) userText(frame.text);
    },
    asr_start() {
      turn = next || newTurn(mode === "call" ? "call" : "ptt");
      next = null;
      if (turn.mode === "call") turn.speechEndAt = lastLoudSentAt ?? performance.now();
      inTurn = true;
      dropAudio = false;
      greetingPlaying = false;
      setState("thinking");
    },
    asr_end(frame) {
      if (turn) turn.transcript = frame.text;
      userText(frame.text);
      if (forming) forming.element.classList.remove("forming");
      forming = null;
    },
    thinking() {
      inTurn = true;
    },
    tts_start() {
      if (!inTurn && mode === "call") {
        // Outside a turn: the greeting that opens a call on a new session.
        pt.greeting = { chunks: 0, stopped: false };
        greetingPlaying = true;
        dropAudio = false;
      }
    },
    response(frame) {
      if (turn && inTurn) turn.replyText += (turn.replyText ? " " : "") + frame.content;
    },
    audio_chunk(frame) {
      if (dropAudio || !ctx) return;
      const received = performance.now();
      const at = player.schedule(frame.audio_base64, frame.audio_sample_rate);
      if (at === null) return;
      syncSources();
      setState("speaking");
      playing = inTurn ? turn : "greeting";
      if (!inTurn) {
        if (pt.greeting) pt.greeting.chunks += 1;
        return;
      }
      if (!turn) return;
      turn.chunks += 1;
      if (turn.firstAudioAt === null) {
        turn.firstChunkAt = received;
        // When it was scheduled, not now: the page's own updates since then (a few ms on a loaded box)
        // would put the start the same reading placed before the scheduling.
        turn.firstAudioAt = player.lastScheduledPerformanceTime;
        turn.firstAudioStartsAt = player.lastStartPerformanceTime;
      }
    },
    llm_end() {
      if (turn && inTurn) turn.llmEndAt = performance.now();
    },
    interrupted() {
      stopPlayback({ by: "server" });
      if (mode !== "ptt") setState("interrupted"); // pressing to talk interrupted it: the page listens
    },
    turn_end(frame) {
      const t = turn;
      inTurn = false;
      turn = null;
      if (forming && !next) {
        forming.element.remove(); // no transcript came (no speech): nothing was said
        forming = null;
      }
      if (!t) return;
      t.replyDoneAt = performance.now();
      t.status = frame.status;
      t.messageId = frame.message_id;
      if (frame.status === "interrupted") t.interrupted = true;
      if (pt.state === "thinking") setState(mode === "call" ? "listening" : "idle");
      const replies = history.querySelectorAll(".msg-assistant");
      const element = replies[replies.length - 1];
      if (element && t.chunks) addLatency(element, t);
    },
    error(frame) {
      if (cancelled && frame.code === "empty_audio") {
        cancelled = false;
        return true;
      }
      if (["empty_audio", "no_speech", "asr_failed", "tts_failed", "turn_in_progress"].includes(frame.code)) {
        if (pt.state === "thinking") setState(mode === "call" ? "listening" : "idle");
        if (next && !inTurn) {
          next.status = "failed"; // refused before its turn began
          next = null;
        }
        if (forming && !inTurn) {
          forming.element.remove();
          forming = null;
        }
      }
    },
  };

  return {
    // True when the frame was the voice's alone (chat.js then leaves it).
    onFrame(frame) {
      const handler = handlers[frame.type];
      return Boolean(handler && handler(frame) === true);
    },
    interrupt,
    busy() {
      return inTurn || Boolean(player && player.active);
    },
    disconnected() {
      connected = false;
      if (mode === "ptt") mode = null;
      if (mode === "call") mode = null; // the server ended the call with the socket
      callStarted = false;
      stopPlayback();
      inTurn = false;
      turn = null;
      next = null;
      setState("idle");
      updateControls();
    },
  };
}
