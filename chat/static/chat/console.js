/* The agent console's script (templates/chat/console.html, no build step): the console socket
   (ws/chat/agents/) for the queue and this agent's assignments, and the open conversation's own
   socket (ws/chat/<id>/) to read and write. Both use the page's session. Frames: docs/chat.md. */
(function () {
  "use strict";

  var PING_MS = 20000; // the server closes a socket silent for 60 s (4408)
  var MAX_BACKOFF_MS = 30000;
  // Closes that a reconnect cannot mend.
  var FINAL = {
    4401: "You are signed out: reload the page to sign in again.",
    4403: "This page may not open that socket (its origin or organization).",
    4404: "No such conversation in this organization."
  };

  var PRIORITIES = { 1: "low", 2: "normal", 3: "high", 4: "urgent" }; // chat.models.Priority

  var root = document.getElementById("console");
  var org = root.dataset.org;
  var $ = function (id) { return document.getElementById(id); };

  var queue = []; // the org's waiting conversations (summaries)
  var mine = new Map(); // id -> summary: assigned to me, or resolved here and not yet closed
  var threads = new Map(); // id -> {lastSeq, messages, pending: Map(client_id -> text), status}
  var current = null; // the open conversation: {id, thread, link}
  var wantOpen = null; // accepted here: open it once it is assigned

  function wsUrl(path, params) {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + location.host + path + "?" + new URLSearchParams(params).toString();
  }

  // A socket that pings, reconnects with backoff (jittered, doubling up to 30 s) and stops for good
  // on a close in FINAL or when stopped. options: url(), frame(f), state(s, delay), fail(text), open().
  function Link(options) {
    this.options = options;
    this.ws = null;
    this.attempt = 0;
    this.stopped = false;
    this.connect();
  }
  Link.prototype.connect = function () {
    var self = this;
    var ws = new WebSocket(this.options.url());
    var pinger = null;
    this.ws = ws;
    this.options.state("connecting");
    ws.onopen = function () {
      self.attempt = 0;
      self.options.state("open");
      pinger = setInterval(function () { self.send({ type: "ping" }); }, PING_MS);
      if (self.options.open) self.options.open();
    };
    ws.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame && frame.type !== "pong") self.options.frame(frame);
    };
    ws.onclose = function (event) {
      clearInterval(pinger);
      if (self.ws !== ws || self.stopped) return;
      self.ws = null;
      if (FINAL[event.code]) {
        self.stopped = true;
        self.options.state("stopped");
        self.options.fail(FINAL[event.code] + " (" + event.code + ")");
        return;
      }
      var delay = Math.round(Math.min(MAX_BACKOFF_MS, 500 * Math.pow(2, self.attempt)) * (0.5 + Math.random() / 2));
      self.attempt += 1;
      self.options.state("closed", delay);
      self.retry = setTimeout(function () { self.connect(); }, delay);
    };
  };
  Link.prototype.send = function (frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  };
  Link.prototype.stop = function () {
    this.stopped = true;
    clearTimeout(this.retry);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  };

  function showState(element, label, state, delay) {
    element.dataset.state = state;
    element.textContent = label + ": " + ({
      connecting: "connecting…",
      open: "connected",
      stopped: "disconnected",
      closed: "reconnecting in " + Math.ceil((delay || 0) / 1000) + " s…"
    }[state] || state);
  }

  function showError(text) {
    var line = document.createElement("p");
    line.textContent = text;
    $("errors").appendChild(line);
    setTimeout(function () { line.remove(); }, 15000);
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function button(text, className, onClick) {
    var node = el("button", className, text);
    node.type = "button";
    node.addEventListener("click", onClick);
    return node;
  }

  function describe(summary) {
    var parts = [summary.site, PRIORITIES[summary.priority] || "priority " + summary.priority];
    if (summary.queued_at) parts.push("since " + new Date(summary.queued_at).toLocaleTimeString());
    if (summary.escalation_level) parts.push("escalated " + summary.escalation_level + "×");
    return parts.filter(Boolean).join(" · ");
  }

  function item(summary, buttons) {
    var li = el("li", current && current.id === summary.id ? "current" : "");
    li.dataset.id = summary.id;
    li.dataset.status = summary.status;
    li.appendChild(el("strong", "status-" + summary.status, summary.visitor_name || "Visitor"));
    if (summary.status === "resolved") li.appendChild(el("span", "badge", " (resolved)"));
    li.appendChild(el("span", "meta", describe(summary)));
    buttons.forEach(function (node) { li.appendChild(node); });
    return li;
  }

  function renderLists() {
    $("queue").replaceChildren.apply($("queue"), queue.map(function (summary) {
      return item(summary, [button("Accept", "accept", function () { accept(summary.id); })]);
    }));
    $("queue-count").textContent = String(queue.length);
    $("queue-empty").hidden = queue.length > 0;
    var assigned = Array.from(mine.values());
    $("mine").replaceChildren.apply($("mine"), assigned.map(function (summary) {
      return item(summary, [button("Open", "open", function () { openConversation(summary.id); })]);
    }));
    $("mine-empty").hidden = assigned.length > 0;
  }

  function act(type, id, extra) {
    var frame = Object.assign({ type: type, conversation_id: id }, extra || {});
    if (!consoleLink.send(frame)) showError("The console is not connected: try again in a moment.");
  }

  function accept(id) {
    wantOpen = id;
    act("accept", id);
  }

  function onConsoleFrame(frame) {
    if (frame.type === "hello") {
      var agent = frame.agent;
      $("me").textContent = agent.name + " · tier " + agent.tier + " · up to " + agent.capacity + " at once";
      mine.forEach(function (summary, id) { if (summary.status !== "resolved") mine.delete(id); });
      frame.assigned.forEach(function (summary) { mine.set(summary.id, summary); });
    } else if (frame.type === "queue") {
      queue = frame.waiting;
    } else if (frame.type === "assigned") {
      mine.set(frame.conversation_id, frame.conversation);
      if (wantOpen === frame.conversation_id) {
        wantOpen = null;
        openConversation(frame.conversation_id);
      }
      setThreadStatus(frame.conversation_id, "assigned");
    } else if (frame.type === "unassigned") {
      mine.delete(frame.conversation_id);
    } else if (frame.type === "resolved") {
      var summary = mine.get(frame.conversation_id);
      if (summary) summary.status = "resolved";
      setThreadStatus(frame.conversation_id, "resolved");
    } else if (frame.type === "error") {
      showError(frame.code + ": " + frame.detail);
    }
    renderLists();
    if (current) renderHead();
  }

  function summaryOf(id) {
    return mine.get(id) || queue.filter(function (summary) { return summary.id === id; })[0] || null;
  }

  function setThreadStatus(id, status) {
    var thread = threads.get(id);
    if (thread) thread.status = status;
    if (current && current.id === id) renderHead();
  }

  function openConversation(id) {
    if (current && current.id === id) return;
    closeConversation();
    var summary = summaryOf(id);
    var thread = threads.get(id);
    if (!thread) {
      thread = { lastSeq: 0, messages: [], pending: new Map(), status: summary ? summary.status : "" };
      threads.set(id, thread);
    }
    var opened = { id: id, thread: thread, title: summary ? summary.visitor_name || "Visitor" : "Visitor" };
    current = opened;
    opened.link = new Link({
      // From the last message this page has: the whole history the first time, then what it missed.
      url: function () { return wsUrl("/ws/chat/" + id + "/", { org: org, after: String(thread.lastSeq) }); },
      state: function (state, delay) { showState($("conversation-link"), "socket", state, delay); },
      fail: showError,
      frame: function (frame) { onThreadFrame(opened, frame); },
      open: function () {
        // Unconfirmed messages go again with their client_id: the server stores each once.
        thread.pending.forEach(function (text, clientId) {
          opened.link.send({ type: "message", text: text, client_id: clientId });
        });
      }
    });
    $("conversation").hidden = false;
    renderHead();
    renderMessages();
    renderLists();
    $("text").focus();
  }

  function closeConversation() {
    if (!current) return;
    current.link.stop();
    var summary = mine.get(current.id);
    if (summary && summary.status === "resolved") mine.delete(current.id);
    current = null;
    $("conversation").hidden = true;
    renderLists();
  }

  function onThreadFrame(opened, frame) {
    var thread = opened.thread;
    if (frame.type === "message") {
      if (frame.seq <= thread.lastSeq) return;
      thread.lastSeq = frame.seq;
      thread.messages.push(frame);
      if (frame.client_id) thread.pending.delete(frame.client_id);
    } else if (frame.type === "status" || frame.type === "assigned") {
      thread.status = frame.type === "assigned" ? "assigned" : frame.status;
    } else if (frame.type === "typing") {
      showTyping(frame.sender);
    } else if (frame.type === "error") {
      showError(frame.code + ": " + frame.detail);
    }
    if (current === opened) {
      renderHead();
      renderMessages();
    }
  }

  var typingTimer = null;
  function showTyping(sender) {
    $("typing").textContent = (sender.name || sender.kind) + " is typing…";
    $("typing").hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { $("typing").hidden = true; }, 4000);
  }

  function renderHead() {
    var status = current.thread.status || "";
    var summary = mine.get(current.id);
    $("conversation-title").textContent = current.title;
    $("conversation-status").textContent = status;
    $("resolve").hidden = status !== "assigned";
    $("transfer").hidden = !(status === "assigned" && summary && summary.status === "assigned");
    $("reopen").hidden = status !== "resolved";
  }

  function renderMessages() {
    var thread = current.thread;
    var list = $("messages");
    var rows = thread.messages.map(function (message) {
      var li = el("li", "from-" + message.sender.kind);
      li.dataset.seq = String(message.seq);
      var when = new Date(message.created_at).toLocaleTimeString();
      li.appendChild(el("span", "who", (message.sender.name || message.sender.kind) + " · " + when));
      li.appendChild(el("span", "text", message.text));
      return li;
    });
    thread.pending.forEach(function (text) {
      var li = el("li", "from-agent pending");
      li.appendChild(el("span", "who", "sending…"));
      li.appendChild(el("span", "text", text));
      rows.push(li);
    });
    list.replaceChildren.apply(list, rows);
    list.scrollTop = list.scrollHeight;
  }

  function clientId() {
    var bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes); // crypto.randomUUID needs a secure context; this does not
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function send() {
    var text = $("text").value.trim();
    if (!current || !text) return;
    var id = clientId();
    current.thread.pending.set(id, text);
    current.link.send({ type: "message", text: text, client_id: id }); // or on reconnect
    $("text").value = "";
    renderMessages();
  }

  $("compose").addEventListener("submit", function (event) { event.preventDefault(); send(); });
  $("text").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); send(); }
  });
  $("resolve").addEventListener("click", function () { act("resolve", current.id); });
  $("transfer").addEventListener("click", function () { act("transfer", current.id, { to_agent: null }); });
  $("reopen").addEventListener("click", function () { act("reopen", current.id); });
  $("close").addEventListener("click", closeConversation);

  var consoleLink = new Link({
    url: function () { return wsUrl("/ws/chat/agents/", { org: org }); },
    state: function (state, delay) { showState($("connection"), "Console", state, delay); },
    fail: showError,
    frame: onConsoleFrame
  });
  renderLists();
})();
