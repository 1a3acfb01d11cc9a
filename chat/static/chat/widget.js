// The visitor's chat page (chat/templates/chat/widget.html; docs/chat.md, "The widget"). It starts
// a conversation or resumes the one in localStorage ({conversation_id, visitor_token, last_seq,
// pending}), mints a fresh ticket with the visitor token (in the Authorization header only) for
// every connection, and resumes the socket with ?after=<the last seq shown>.
(function () {
  "use strict";

  var root = document.getElementById("chat");
  if (!root) return;
  var siteKey = root.dataset.siteKey;
  var startUrl = root.dataset.startUrl;
  var storageKey = "chat:" + siteKey;
  var STATUS_TEXT = {
    bot: "You are chatting with our bot.",
    queued: "Waiting for a human agent…",
    assigned: "An agent is with you.",
    resolved: "This conversation is resolved.",
  };
  var KIND_TEXT = { visitor: "you", agent: "agent", bot: "bot", system: "system" };
  var PING_MS = Number(root.dataset.heartbeatMs) || 25000; // REALTIME_HEARTBEAT_SECONDS
  var TYPING_MS = 3000;
  var MAX_BACKOFF_MS = 15000;

  var storage = storageOrMemory();
  var state = load();
  var socket = null;
  var attempts = 0;
  var reconnectTimer = null;
  var pingTimer = null;
  var typingShownTimer = null;
  var lastTypingSent = 0;
  var lastSeqShown = 0; // the page's: a fresh page replays the whole conversation

  function el(id) {
    return document.getElementById(id);
  }

  // localStorage, or (where the browser denies it, as in a third-party frame with third-party
  // storage blocked) a map that lasts as long as the page.
  function storageOrMemory() {
    try {
      var probe = "chat:probe";
      window.localStorage.setItem(probe, "1");
      window.localStorage.removeItem(probe);
      return window.localStorage;
    } catch (error) {
      var memory = {};
      return {
        getItem: function (key) { return Object.prototype.hasOwnProperty.call(memory, key) ? memory[key] : null; },
        setItem: function (key, value) { memory[key] = String(value); },
        removeItem: function (key) { delete memory[key]; },
      };
    }
  }

  function load() {
    try {
      var saved = JSON.parse(storage.getItem(storageKey) || "null");
      if (saved && saved.conversation_id && saved.visitor_token) {
        saved.pending = Array.isArray(saved.pending) ? saved.pending : [];
        saved.last_seq = saved.last_seq || 0;
        return saved;
      }
    } catch (error) {
      // unreadable: start afresh
    }
    return null;
  }

  function save() {
    if (!state) return;
    try {
      storage.setItem(storageKey, JSON.stringify(state));
    } catch (error) {
      // full or revoked: the page goes on with what it holds
    }
  }

  function forget() {
    try {
      storage.removeItem(storageKey);
    } catch (error) {
      // revoked: nothing to forget
    }
    state = null;
  }

  function newId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function post(url, body, token) {
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (token) headers.Authorization = "Visitor " + token;
    return fetch(url, {
      method: "POST",
      headers: headers,
      body: JSON.stringify(body || {}),
      credentials: "omit",
      cache: "no-store",
    }).then(
      function (response) {
        return response.json().then(
          function (data) { return { status: response.status, data: data }; },
          function () { return { status: response.status, data: null }; }
        );
      },
      function () { return { status: 0, data: null }; }
    );
  }

  function describe(answer) {
    if (answer.status === 0) return "No connection: try again.";
    if (answer.status === 429) return "Too many attempts: wait a minute and try again.";
    var data = answer.data;
    if (data && typeof data === "object") {
      if (data.detail) return String(data.detail);
      var first = Object.keys(data)[0];
      if (first) return first + ": " + [].concat(data[first]).join(" ");
    }
    return "Something went wrong (" + answer.status + "): try again.";
  }

  function showError(id, text) {
    var node = el(id);
    node.textContent = text || "";
    node.hidden = !text;
  }

  function setConnection(name) {
    var node = el("connection");
    node.dataset.state = name;
    node.textContent = { connecting: "Connecting…", open: "Connected", reconnecting: "Reconnecting…", closed: "Disconnected" }[name] || "";
  }

  function setStatus(status) {
    var node = el("status");
    node.dataset.status = status;
    node.textContent = STATUS_TEXT[status] || status;
    el("handoff").hidden = status !== "bot";
  }

  function showStart() {
    el("conversation").hidden = true;
    el("start").hidden = false;
    el("messages").textContent = "";
    lastSeqShown = 0;
    setConnection("idle");
  }

  function showConversation() {
    el("start").hidden = true;
    el("conversation").hidden = false;
    state.pending.forEach(showPending);
  }

  // Messages: one <li> per seq, in seq order; the visitor's unacknowledged ones after them.

  function messageItem(kind, name, text) {
    var item = document.createElement("li");
    item.dataset.kind = kind;
    var sender = document.createElement("span");
    sender.className = "sender";
    sender.textContent = name || (kind === "visitor" ? "You" : kind);
    var label = document.createElement("span");
    label.className = "kind";
    label.textContent = KIND_TEXT[kind] || kind;
    var body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    item.append(sender, label, body);
    return item;
  }

  function showMessage(frame) {
    if (typeof frame.seq !== "number" || frame.seq <= lastSeqShown) return; // already shown
    var list = el("messages");
    if (frame.client_id) {
      var pending = list.querySelector('li.pending[data-client-id="' + CSS.escape(frame.client_id) + '"]');
      if (pending) pending.remove();
    }
    var item = messageItem(frame.sender.kind, frame.sender.name, frame.text);
    item.dataset.seq = String(frame.seq);
    var before = list.querySelector("li.pending");
    list.insertBefore(item, before);
    lastSeqShown = frame.seq;
    item.scrollIntoView({ block: "end" });
  }

  function showPending(message) {
    var item = messageItem("visitor", "", message.text);
    item.className = "pending";
    item.dataset.clientId = message.client_id;
    el("messages").append(item);
  }

  function acknowledge(clientId) {
    var before = state.pending.length;
    state.pending = state.pending.filter(function (m) { return m.client_id !== clientId; });
    return state.pending.length !== before;
  }

  function showTyping(frame) {
    var node = el("typing");
    var who = (frame.sender && (frame.sender.name || frame.sender.kind)) || "Someone";
    node.textContent = who + " is typing…";
    node.hidden = false;
    clearTimeout(typingShownTimer);
    typingShownTimer = setTimeout(function () { node.hidden = true; }, 4000);
  }

  function handle(frame) {
    if (!frame || typeof frame !== "object") return;
    if (frame.type === "message") {
      var changed = frame.client_id ? acknowledge(frame.client_id) : false;
      showMessage(frame);
      if (frame.seq > state.last_seq) {
        state.last_seq = frame.seq;
        changed = true;
      }
      if (changed) save();
      if (frame.sender.kind !== "visitor") {
        el("typing").hidden = true;
        if (document.visibilityState === "visible") transmit({ type: "read", seq: frame.seq });
      }
    } else if (frame.type === "typing") {
      showTyping(frame);
    } else if (frame.type === "status") {
      setStatus(frame.status);
    } else if (frame.type === "assigned") {
      setStatus("assigned");
      if (frame.agent && frame.agent.name) el("status").textContent = frame.agent.name + " (agent) is with you.";
    } else if (frame.type === "error") {
      showError("chat-error", frame.detail);
    }
  }

  // The socket: a fresh ticket each time (tickets are single-use), backoff when it drops.

  function ticketsUrl() {
    return startUrl + encodeURIComponent(state.conversation_id) + "/tickets/";
  }

  function connect() {
    clearTimeout(reconnectTimer);
    if (!state || socket) return;
    setConnection(attempts ? "reconnecting" : "connecting");
    post(ticketsUrl(), null, state.visitor_token).then(function (answer) {
      if (!state) return;
      if (answer.status === 401 || answer.status === 404) {
        forget(); // the conversation is gone, or the token is not its own: start another
        showStart();
        return;
      }
      if (answer.status !== 201) {
        retry();
        return;
      }
      if (answer.data.status) setStatus(answer.data.status);
      open(answer.data.ws_url, answer.data.ticket);
    });
  }

  function open(wsUrl, ticket) {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + location.host + wsUrl + "?ticket=" + encodeURIComponent(ticket) + "&after=" + lastSeqShown;
    var ws = new WebSocket(url);
    socket = ws;
    ws.onopen = function () {
      attempts = 0;
      setConnection("open");
      showError("chat-error", "");
      state.pending.forEach(function (message) {
        transmit({ type: "message", text: message.text, client_id: message.client_id });
      });
      clearInterval(pingTimer);
      pingTimer = setInterval(function () { transmit({ type: "ping" }); }, PING_MS);
    };
    ws.onmessage = function (event) {
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      handle(frame);
    };
    ws.onclose = function (event) {
      if (socket !== ws) return;
      socket = null;
      clearInterval(pingTimer);
      if (event.code === 4404) {
        forget();
        showStart();
      } else if (event.code === 4403) {
        setConnection("closed");
        showError("chat-error", "This page may not open the chat.");
      } else {
        retry();
      }
    };
  }

  function retry() {
    setConnection("reconnecting");
    var delay = Math.min(MAX_BACKOFF_MS, 500 * Math.pow(2, attempts)) * (0.5 + Math.random() / 2);
    attempts += 1;
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, delay);
  }

  function transmit(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  // The visitor's actions.

  el("start").addEventListener("submit", function (event) {
    event.preventDefault();
    var button = event.target.querySelector("button");
    button.disabled = true;
    var body = { site_key: siteKey, name: el("start-name").value.trim(), email: el("start-email").value.trim() };
    post(startUrl, body).then(function (answer) {
      button.disabled = false;
      if (answer.status !== 201) {
        showError("start-error", describe(answer));
        return;
      }
      showError("start-error", "");
      state = { conversation_id: answer.data.conversation_id, visitor_token: answer.data.visitor_token, last_seq: 0, pending: [] };
      save();
      showConversation();
      setStatus("bot");
      setConnection("connecting");
      open(answer.data.ws_url, answer.data.ticket);
    });
  });

  el("compose").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = el("text").value;
    if (!text.trim()) return;
    var message = { client_id: newId(), text: text };
    state.pending.push(message);
    save();
    showPending(message);
    el("text").value = "";
    transmit({ type: "message", text: message.text, client_id: message.client_id }); // else sent on reconnect
  });

  el("text").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      el("compose").requestSubmit();
    }
  });

  el("text").addEventListener("input", function () {
    var now = Date.now();
    if (now - lastTypingSent > TYPING_MS && transmit({ type: "typing" })) lastTypingSent = now;
  });

  el("handoff").addEventListener("click", function () {
    if (!transmit({ type: "handoff" })) showError("chat-error", "Not connected yet: try again in a moment.");
  });

  window.addEventListener("online", function () {
    if (state && !socket) {
      attempts = 0;
      connect();
    }
  });

  if (state) {
    showConversation();
    connect();
  } else {
    showStart();
  }
})();
