// The chat page: one cookie-authenticated socket (/ws, docs/protocol.md) streaming the reply into the
// page; voice.js adds push-to-talk and calls on the same socket. Model output is only ever set as
// textContent: it is text, never markup.

import { createVoice } from "./voice.js";

// What each error code means: ErrorCode.DESCRIPTIONS (apps/realtime/protocol.py), rendered into the
// page by the view, so every code the server can send has its meaning here.
const ERROR_MEANINGS = JSON.parse(document.getElementById("error-meanings").textContent);

// Close codes after which reconnecting cannot help (the protocol's close codes).
const FINAL_CLOSES = {
  4001: "Your login has ended: log in again to keep talking.",
  4003: "This page's address may not open a conversation.",
  4010: "Access was revoked.",
  4011: "This account was deactivated.",
  4012: "You logged out: log in again to keep talking.",
};

const chat = document.getElementById("chat");
const history = document.getElementById("history");
const connection = document.getElementById("connection");
const errors = document.getElementById("errors");
const composer = document.getElementById("composer");
const input = document.getElementById("message");
const send = document.getElementById("send");
const stop = document.getElementById("stop");
const regenerate = document.getElementById("regenerate");
const slug = chat.dataset.character;
const characterName = chat.dataset.characterName;

let socket = null;
let connected = false;
let attempts = 0; // failed connections in a row, for the back-off
let reply = null; // the reply being written: {element, text, streamed}
let turnPending = false; // a message or regenerate was sent and its turn has not ended
let replacing = null; // the reply element a regenerate writes again, until its turn starts

function setStatus(text, state) {
  connection.textContent = text;
  connection.dataset.state = state;
  chat.dataset.connection = state;
}

// The last message is the character's reply to one of yours (a greeting alone has none to replace).
function canRegenerate() {
  const messages = history.querySelectorAll(".msg");
  const last = messages[messages.length - 1];
  return Boolean(last && last.dataset.role === "assistant" && history.querySelector(".msg-user"));
}

function updateSend() {
  const busy = turnPending || reply !== null;
  // A button that turns off while focused would drop keyboard focus to the page: hand it to the input.
  const focused = document.activeElement;
  send.disabled = !connected || busy;
  stop.disabled = !connected || !(busy || voice.busy());
  regenerate.disabled = !connected || busy || !canRegenerate();
  if (focused instanceof HTMLButtonElement && focused.disabled) input.focus();
}

function scrollToEnd() {
  history.scrollTop = history.scrollHeight;
}

function addMessage(role, content) {
  const element = document.createElement("div");
  element.className = `msg msg-${role}`;
  element.dataset.role = role;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : characterName;
  const text = document.createElement("p");
  text.className = "text";
  text.textContent = content;
  element.append(who, text);
  history.append(element);
  scrollToEnd();
  return { element, text };
}

function addNote(element, note) {
  const span = document.createElement("span");
  span.className = "note";
  span.textContent = note;
  element.append(span);
}

function showEmotion(element, emotion) {
  if (!emotion || emotion === "neutral") return;
  let badge = element.querySelector(".emotion");
  if (!badge) {
    badge = document.createElement("span");
    badge.className = "emotion";
    element.append(badge);
  }
  badge.dataset.emotion = emotion;
  badge.textContent = emotion;
}

function showError(code, message) {
  const p = document.createElement("p");
  p.dataset.code = code;
  // The descriptions name settings and frames in `backticks`: shown as plain words.
  p.textContent = `${(ERROR_MEANINGS[code] || message).replace(/`/g, "")} (${code})`;
  errors.replaceChildren(p);
}

function endReply(status) {
  turnPending = false;
  replacing = null;
  if (reply === null) {
    updateSend();
    return;
  }
  reply.element.classList.remove("pending");
  reply.element.removeAttribute("aria-busy"); // screen readers read the finished reply once
  if (status && status !== "complete") reply.element.classList.add(`msg-${status}`);
  if (status === "interrupted") addNote(reply.element, "(stopped)");
  if (status === "failed") addNote(reply.element, "(no reply)");
  reply = null;
  updateSend();
}

const handlers = {
  connected(frame) {
    connected = true;
    attempts = 0;
    chat.dataset.sessionId = frame.session_id;
    setStatus("Connected", "open");
    updateSend();
  },
  thinking() {
    let element, text;
    if (replacing) {
      // Regenerate: the new reply streams into the old one's place.
      element = replacing;
      text = element.querySelector(".text");
      text.textContent = "";
      element.querySelectorAll(".emotion, .note").forEach((old) => old.remove());
      element.classList.remove("msg-interrupted", "msg-failed");
      replacing = null;
    } else {
      ({ element, text } = addMessage("assistant", ""));
    }
    element.classList.add("pending");
    element.setAttribute("aria-busy", "true"); // not announced word by word while it is written
    reply = { element, text, streamed: false };
    updateSend();
  },
  text_delta(frame) {
    if (reply === null) return;
    reply.streamed = true;
    reply.text.append(frame.content); // a new text node: only the addition is new to the live region
    scrollToEnd();
  },
  response(frame) {
    if (reply === null) return;
    if (!reply.streamed) reply.text.append((reply.text.textContent ? " " : "") + frame.content);
    showEmotion(reply.element, frame.emotion);
  },
  turn_end(frame) {
    endReply(frame.status);
  },
  error(frame) {
    if (frame.code === "no_turn") return; // Stop just after the reply ended: nothing to say
    showError(frame.code, frame.message);
    if (frame.code === "unknown_session") setStatus("Not connected", "closed"); // the socket stays unconnected
    if (reply === null) {
      // A refused message or regenerate never gets a turn: let the user go on.
      turnPending = false;
      replacing = null;
    }
    updateSend();
  },
  disconnected(frame) {
    setStatus(`Disconnected (${frame.reason})`, "closed");
  },
};

function open() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws`);
  setStatus(attempts ? "Reconnecting…" : "Connecting…", "connecting");
  socket.addEventListener("open", () => {
    const hello = { type: "connect", character_name: slug, text_deltas: true };
    if (chat.dataset.sessionId) hello.session_id = chat.dataset.sessionId; // the session this page shows
    socket.send(JSON.stringify(hello));
  });
  socket.addEventListener("message", (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return; // binary audio frames belong to the voice page
    }
    if (voice.onFrame(frame)) return; // first: at turn_end the reply element is still the current one
    const handler = handlers[frame.type];
    if (handler) handler(frame);
  });
  socket.addEventListener("close", (event) => {
    connected = false;
    socket = null;
    voice.disconnected();
    endReply(reply && reply.text.textContent ? "interrupted" : "failed");
    const final = FINAL_CLOSES[event.code];
    if (final) {
      setStatus(final, "closed");
      return;
    }
    // Back off: 0.5 s, 1 s, 2 s … up to 15 s, with jitter so many pages do not return at once.
    const delay = Math.min(15000, 500 * 2 ** attempts) * (0.5 + Math.random() / 2);
    attempts += 1;
    setStatus(`Connection lost; reconnecting in ${Math.ceil(delay / 1000)} s…`, "reconnecting");
    setTimeout(open, delay);
  });
}

composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const content = input.value.trim();
  if (!content || !connected || reply !== null) return;
  errors.replaceChildren();
  addMessage("user", content);
  socket.send(JSON.stringify({ type: "message", content }));
  input.value = "";
  turnPending = true;
  updateSend();
});

stop.addEventListener("click", () => {
  if (!connected || stop.disabled) return;
  voice.interrupt(); // the audio already scheduled stops now, not when the server answers
  socket.send(JSON.stringify({ type: "stop" }));
  stop.disabled = true; // once is enough; turn_end (status interrupted) follows
  input.focus();
});

regenerate.addEventListener("click", () => {
  if (!connected || regenerate.disabled) return;
  errors.replaceChildren();
  const messages = history.querySelectorAll(".msg");
  replacing = messages[messages.length - 1];
  turnPending = true;
  socket.send(JSON.stringify({ type: "regenerate" }));
  updateSend();
});

input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    composer.requestSubmit();
  }
});

const voice = createVoice({
  send: (frame) => connected && socket.send(JSON.stringify(frame)),
  sendBinary: (pcm) => connected && socket.send(pcm),
  history,
  addMessage,
  changed: () => updateSend(),
});

scrollToEnd();
open();
