// The voice page (/ai/voice/): starts a session (POST /ai/voice/sessions/), records the
// microphone as WebM/Opus while "Speak" is on, sends the chunks as binary frames and
// end_of_utterance on "Done speaking", and plays the reply's speech as it comes: a WAV per
// part (reply.audio, then its binary frames), played one after the other.
(function () {
  "use strict";
  const cfg = JSON.parse(document.getElementById("voice-config").textContent);
  const byId = function (id) { return document.getElementById(id); };
  const talk = byId("talk");
  const done = byId("done");
  const statusEl = byId("status");
  const speech = byId("speech");
  const FINAL = { 1000: "The session has ended.", 4403: "This session has ended.", 4404: "No such session." };
  let microphone = null;
  let socket = null;
  let session = null;
  let recorder = null;
  let sending = Promise.resolve();  // binary frames go out in the order they were recorded
  let part = null;  // the binary frames of the speech part being received
  let parts = [];  // parts received, waiting their turn to be played
  let playing = false;
  let replyDone = false;
  let retry = 500;

  function setState(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text || "";
  }

  function send(data) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(data);
  }

  function sendJson(frame) { send(JSON.stringify(frame)); }

  function csrf() { return (document.cookie.match(/(?:^|; )csrftoken=([^;]+)/) || [])[1] || ""; }

  async function post(url, body) {
    const headers = { "Content-Type": "application/json", "X-CSRFToken": csrf() };
    if (cfg.org) headers["X-Org"] = cfg.org;
    const answer = await fetch(url, {
      method: "POST", headers: headers, body: JSON.stringify(body), credentials: "same-origin",
    });
    if (!answer.ok) throw new Error("The server answered " + answer.status + ".");
    return answer.json();
  }

  function stopSpeech() {
    part = null;
    parts = [];
    playing = false;
    replyDone = false;
    speech.pause();
    speech.removeAttribute("src");
    speech.dataset.bytes = "0";
    speech.dataset.state = "idle";
  }

  function endPart() {
    if (part && part.length) parts.push(new Blob(part, { type: "audio/wav" }));
    part = null;
    playNext();
  }

  function playNext() {
    if (playing) return;
    const blob = parts.shift();
    if (!blob) {
      if (replyDone && speech.dataset.state === "waiting") speech.dataset.state = "played";
      return;
    }
    playing = true;
    speech.dataset.bytes = String(Number(speech.dataset.bytes || 0) + blob.size);
    if (speech.src) URL.revokeObjectURL(speech.src);
    speech.src = URL.createObjectURL(blob);
    speech.dataset.state = "loading";
    speech.play().catch(function (err) { speech.dataset.state = "blocked"; setState("error", String(err)); });
  }
  speech.addEventListener("playing", function () { speech.dataset.state = "playing"; });
  speech.addEventListener("ended", function () {
    playing = false;
    speech.dataset.state = "waiting";
    playNext();
  });

  const handlers = {
    ready: function () { retry = 500; talk.disabled = false; setState("ready"); },
    utterance: function () { replyDone = false; setState("thinking"); },
    transcript: function (frame) { byId("transcript").textContent = frame.text; },
    "reply.delta": function (frame) { byId("reply").textContent += frame.text; },
    "reply.tool_call": function (frame) {
      const item = document.createElement("li");
      item.textContent = "Tool: " + frame.name + " " + frame.arguments;
      byId("tools").appendChild(item);
    },
    "reply.tool_result": function () {},
    "reply.audio": function () { endPart(); part = []; setState("speaking"); },
    "reply.done": function () { replyDone = true; endPart(); setState("done"); },
    "reply.cancelled": function () { stopSpeech(); setState("cancelled"); },
    error: function (frame) { setState("error", frame.detail); },
    ended: function () {},
    pong: function () {},
  };

  function open(ticket) {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + session.ws_url + "?ticket=" + encodeURIComponent(ticket));
    socket.binaryType = "arraybuffer";
    const beat = setInterval(function () { sendJson({ type: "ping" }); }, cfg.heartbeat_ms);
    socket.onmessage = function (event) {
      if (typeof event.data !== "string") { if (part) part.push(event.data); return; }
      const frame = JSON.parse(event.data);
      const handle = handlers[frame.type];
      if (handle) handle(frame);
    };
    socket.onclose = function (event) {
      clearInterval(beat);
      talk.disabled = true;
      done.disabled = true;
      if (FINAL[event.code]) { setState("ended", FINAL[event.code]); return; }
      setState("reconnecting", "Reconnecting…");
      setTimeout(reconnect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }

  async function reconnect() {
    try {
      const issued = await post("/realtime/tickets/", { opens: "ai-voice:" + session.session_id });
      open(issued.ticket);
    } catch (err) {
      setState("reconnecting", String(err));
      setTimeout(reconnect, retry);
      retry = Math.min(retry * 2, 10000);
    }
  }

  talk.addEventListener("click", function () {
    stopSpeech();  // the server cancels the reply when the first chunk arrives (barge-in)
    byId("reply").textContent = "";
    byId("tools").textContent = "";
    const type = "audio/webm;codecs=opus";
    recorder = new MediaRecorder(microphone, MediaRecorder.isTypeSupported(type) ? { mimeType: type } : {});
    recorder.ondataavailable = function (event) {
      if (!event.data.size) return;
      const blob = event.data;
      sending = sending.then(function () { return blob.arrayBuffer(); }).then(send);
    };
    recorder.onstop = function () {
      sending = sending.then(function () { sendJson({ type: "end_of_utterance" }); });
    };
    recorder.start(250);  // a chunk every 250 ms; each utterance is a recording of its own
    talk.disabled = true;
    done.disabled = false;
    setState("listening");
  });

  done.addEventListener("click", function () {
    done.disabled = true;
    talk.disabled = false;
    if (recorder && recorder.state !== "inactive") recorder.stop();
  });

  (async function () {
    try {
      microphone = await navigator.mediaDevices.getUserMedia({ audio: true });
      byId("mic").textContent = "Microphone on.";
    } catch (err) {
      byId("mic").textContent = "No microphone (" + err.name + ").";
      setState("error", "The page needs a microphone.");
      return;
    }
    try {
      session = await post(cfg.sessions_url, {});
    } catch (err) {
      setState("error", "Could not start a session: " + err.message);
      return;
    }
    open(session.ticket);
  })();
})();
