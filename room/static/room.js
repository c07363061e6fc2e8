// The voice room: join a LiveKit room with the agent, show its state and the transcript of
// both sides, play its voice, and read the agent's connection pool over LiveKit RPC.
import {
  ParticipantKind,
  Room,
  RoomEvent,
  Track,
} from "/vendor/livekit-client.esm.mjs";

const AGENT_JOIN_S = 10;
const STATS_EVERY_MS = 2000;
const TREND_POINTS = 40;

const $ = (id) => document.getElementById(id);

// what the page knows, readable from the browser's console (and by the tests)
const view = {
  state: "idle", // idle | connecting | in-call | left
  agentState: null,
  agentPeakRms: 0,
  transcript: [], // {speaker: "agent" | "you", text, final, waitMs}
  stats: null,
  errors: [],
};
window.voiceRoom = view;

let room = null;
let agent = null;
let audioContext = null;
let statsTimer = null;
const trends = new Map(); // resource -> recent p95 values

function showError(message) {
  view.errors.push(message);
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setAgentState(state) {
  view.agentState = state;
  $("agent-state").textContent = state;
}

// -- transcript ------------------------------------------------------------------------

const lines = new Map(); // segment id -> {item, element}

function showLine(segment, speaker, text, final) {
  let line = lines.get(segment);
  if (!line) {
    const element = document.createElement("li");
    const words = document.createElement("span");
    const wait = document.createElement("small");
    wait.className = "wait";
    element.append(words, wait);
    const item = { speaker, text: "", final: false, waitMs: null };
    view.transcript.push(item);
    $("transcript").append(element);
    line = { item, element, words, wait };
    lines.set(segment, line);
  }
  Object.assign(line.item, { speaker, text, final });
  line.element.className = speaker + (final ? "" : " interim");
  line.words.textContent = text;
  line.element.scrollIntoView({ block: "nearest" });
}

// how long the person waited for a reply (end of their speech to its first audio), as the
// agent measured it; sent when the reply has been spoken, beside the line that shows it
async function readReplyWait(reader) {
  const { wait_ms: waitMs, text } = JSON.parse(await reader.readAll());
  const replies = [...lines.values()].filter((l) => l.item.speaker === "agent").reverse();
  const line = replies.find((l) => l.item.text === text.trim()) ?? replies[0];
  if (!line || !Number.isFinite(waitMs)) return;
  line.item.waitMs = waitMs;
  line.wait.textContent = `${(waitMs / 1000).toFixed(2)} s`;
  line.wait.title = "from the end of your words to the first sound of this reply";
}

async function readTranscription(reader) {
  const attributes = reader.info.attributes ?? {};
  const segment = attributes["lk.segment_id"] ?? reader.info.id;
  const trackId = attributes["lk.transcribed_track_id"];
  const mic = room?.localParticipant.getTrackPublication(Track.Source.Microphone);
  const speaker = trackId && mic && trackId === mic.trackSid ? "you" : "agent";
  // the person's words come as interim streams, then a final one; the agent's words
  // stream in as they are spoken, and are final when the stream ends
  const final = speaker === "agent" || attributes["lk.transcription_final"] !== "false";
  let text = "";
  for await (const chunk of reader) {
    text += chunk;
    if (text.trim()) showLine(segment, speaker, text.trim(), false);
  }
  if (text.trim()) showLine(segment, speaker, text.trim(), final);
}

// -- the agent's voice -----------------------------------------------------------------

function listenTo(track) {
  const element = track.attach();
  element.hidden = true;
  document.body.append(element);
  if (!audioContext) return;
  const source = audioContext.createMediaStreamSource(new MediaStream([track.mediaStreamTrack]));
  const analyser = audioContext.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const measure = () => {
    // the agent's voice may arrive with the connection itself, before the call is shown
    if (view.state !== "connecting" && view.state !== "in-call") return;
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    const rms = Math.sqrt(sum / samples.length);
    view.agentPeakRms = Math.max(view.agentPeakRms, rms);
    $("level").style.width = `${Math.min(100, rms * 400)}%`;
    requestAnimationFrame(measure);
  };
  measure();
}

// -- the pool panel --------------------------------------------------------------------

function sparkline(values) {
  const most = Math.max(...values, 1);
  const points = values
    .map((v, i) => `${(i / Math.max(values.length - 1, 1)) * 100},${20 - (v / most) * 18}`)
    .join(" ");
  return `<svg class="spark" viewBox="0 0 100 20" preserveAspectRatio="none"><polyline points="${points}"/></svg>`;
}

function cell(text, className = "") {
  const td = document.createElement("td");
  td.textContent = text ?? "–";
  if (className) td.className = className;
  return td;
}

function renderStats(stats) {
  const rows = [];
  for (const [name, r] of Object.entries(stats.resources)) {
    const trend = trends.get(name) ?? [];
    const p95 = r.latency_ms.p95;
    if (p95 != null) trend.push(p95);
    trends.set(name, trend.slice(-TREND_POINTS));
    const tr = document.createElement("tr");
    tr.dataset.resource = name;
    tr.append(
      cell(name),
      cell(r.health, r.health),
      cell(r.breaker, r.breaker),
      cell(String(r.requests)),
      cell(p95 == null ? null : p95.toFixed(1)),
      cell(`${r.connections.opened} / ${r.connections.reused}`),
    );
    const spark = document.createElement("td");
    spark.innerHTML = sparkline(trends.get(name));
    tr.append(spark);
    rows.push(tr);
  }
  $("pool-rows").replaceChildren(...rows);
  const outbox = stats.memory_outbox;
  $("pool-note").textContent =
    `pool ${stats.pool}, up ${Math.round(stats.uptime_s)} s` +
    (outbox ? `; memory writes waiting ${outbox.pending}, set aside ${outbox.set_aside}` : "");
  $("pool").hidden = false;
}

async function refreshStats() {
  if (!room || !agent || view.state !== "in-call") return;
  try {
    const payload = await room.localParticipant.performRpc({
      destinationIdentity: agent.identity,
      method: "getConnectionPoolStats",
      payload: "",
    });
    view.stats = JSON.parse(payload);
    renderStats(view.stats);
  } catch (error) {
    $("pool-note").textContent = `pool stats unavailable: ${error.message ?? error}`;
  }
}

// -- joining and leaving ---------------------------------------------------------------

function watchForAgent() {
  return new Promise((resolve, reject) => {
    const found = () => [...room.remoteParticipants.values()].find(
      (p) => p.kind === ParticipantKind.AGENT,
    );
    const already = found();
    if (already) return resolve(already);
    const timer = setTimeout(() => {
      room.off(RoomEvent.ParticipantConnected, onJoin);
      reject(new Error(
        `The agent did not join within ${AGENT_JOIN_S} s. Is the worker running? ` +
        "(make room starts it; see its terminal.)",
      ));
    }, AGENT_JOIN_S * 1000);
    const onJoin = () => {
      const participant = found();
      if (!participant) return;
      clearTimeout(timer);
      room.off(RoomEvent.ParticipantConnected, onJoin);
      resolve(participant);
    };
    room.on(RoomEvent.ParticipantConnected, onJoin);
  });
}

// the run's key, from the address `make room` printed; kept for reloads of this tab
function pageKey() {
  const fromAddress = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromAddress) sessionStorage.setItem("roomKey", fromAddress);
  return fromAddress ?? sessionStorage.getItem("roomKey") ?? "";
}

async function fetchToken(name) {
  let response;
  try {
    response = await fetch("/token", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Room-Key": pageKey() },
      body: JSON.stringify({ name }),
    });
  } catch {
    throw new Error("The room's web server is not answering. Is `make room` still running?");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ?? `The web server answered ${response.status}.`);
  return body;
}

function micError(error) {
  if (error?.name === "NotAllowedError") {
    return "Microphone permission was denied. Allow the microphone for this page in the " +
      "browser's site settings, then press Talk again.";
  }
  if (error?.name === "NotFoundError") return "No microphone was found on this computer.";
  return `The microphone could not be opened: ${error?.message ?? error}`;
}

async function talk(name) {
  clearError();
  view.state = "connecting";
  $("talk").disabled = true;
  audioContext = audioContext ?? new AudioContext();
  await audioContext.resume();
  let details;
  try {
    details = await fetchToken(name);
  } catch (error) {
    return fail(error.message);
  }
  room = new Room({ adaptiveStream: true, dynacast: true });
  room.registerTextStreamHandler("lk.transcription", (reader) => {
    readTranscription(reader).catch((error) => console.warn("transcript", error));
  });
  room.registerTextStreamHandler("agent.reply_wait", (reader) => {
    readReplyWait(reader).catch((error) => console.warn("reply wait", error));
  });
  room.on(RoomEvent.TrackSubscribed, (track, _publication, participant) => {
    if (track.kind === Track.Kind.Audio && participant.kind === ParticipantKind.AGENT) {
      listenTo(track);
    }
  });
  room.on(RoomEvent.ParticipantAttributesChanged, (_changed, participant) => {
    const state = participant.attributes?.["lk.agent.state"];
    if (participant.kind === ParticipantKind.AGENT && state) setAgentState(state);
  });
  room.on(RoomEvent.ParticipantDisconnected, (participant) => {
    if (participant === agent && view.state === "in-call") {
      setAgentState("left");
      showError("The agent left the room.");
    }
  });
  room.on(RoomEvent.Disconnected, () => {
    if (view.state === "in-call") {
      showError("The connection to the LiveKit server was lost. Press Talk to join again.");
      endCall("left");
    }
  });
  try {
    await room.connect(details.url, details.token);
  } catch {
    return fail(
      `The LiveKit server at ${details.url} is not reachable. Is \`make room\` still running?`,
    );
  }
  view.state = "in-call";
  $("call").hidden = false;
  $("join").hidden = true;
  setAgentState("connecting");
  try {
    await room.localParticipant.setMicrophoneEnabled(true);
  } catch (error) {
    return fail(micError(error));
  }
  try {
    agent = await watchForAgent();
  } catch (error) {
    return fail(error.message);
  }
  setAgentState(agent.attributes?.["lk.agent.state"] ?? "listening");
  statsTimer = setInterval(refreshStats, STATS_EVERY_MS);
  refreshStats();
}

function endCall(state) {
  view.state = state;
  clearInterval(statsTimer);
  statsTimer = null;
  agent = null;
  $("call").hidden = state !== "left" || view.transcript.length === 0;
  $("join").hidden = false;
  $("talk").disabled = false;
}

async function fail(message) {
  showError(message);
  const current = room;
  room = null;
  endCall("idle");
  $("call").hidden = true;
  if (current) await current.disconnect();
}

async function leave() {
  const current = room;
  room = null;
  endCall("left");
  setAgentState("left");
  if (current) await current.disconnect();
}

// -- wiring ----------------------------------------------------------------------------

const remembered = localStorage.getItem("voice-room-name");
if (remembered) $("name").value = remembered;

$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  localStorage.setItem("voice-room-name", name);
  talk(name).catch((error) => fail(error.message ?? String(error)));
});

$("mute").addEventListener("click", async () => {
  if (!room) return;
  const enabled = room.localParticipant.isMicrophoneEnabled;
  await room.localParticipant.setMicrophoneEnabled(!enabled);
  $("mute").textContent = enabled ? "Unmute" : "Mute";
});

$("leave").addEventListener("click", () => leave());
