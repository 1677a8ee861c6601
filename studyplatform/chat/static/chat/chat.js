// The chat page: send a message and stream its reply (Server-Sent Events read from one fetch
// POST), stop, regenerate.
// Text arriving from the model is inserted as text (never HTML) while streaming; the final
// reply is replaced by HTML the server has sanitized.
(function () {
  "use strict";
  var chat = document.getElementById("chat");
  var form = document.getElementById("composer");
  if (!chat || !form) { return; }
  var input = document.getElementById("message-input");
  var sendButton = document.getElementById("send-button");
  var stopButton = document.getElementById("stop-button");
  var errorBox = document.getElementById("chat-error");
  var crisisBox = document.getElementById("crisis");
  var strings = JSON.parse(document.getElementById("chat-strings").textContent);
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var pendingRequestId = null;  // reused when a send fails on the network: no duplicate message
  var current = null;           // {stopUrl} while a reply is being sent or streamed

  // The stop URL comes from {% url %} rendered for message 0 (data-stop-url), so a moved route
  // changes in urls.py only.
  function stopUrlFor(messageId) {
    return chat.dataset.stopUrl.replace(/\/0\/stop\/$/, "/" + messageId + "/stop/");
  }

  // Scroll to the bottom of the page, not a message into view: at the bottom, the sticky
  // composer (and the crisis box in it) sits below the newest message instead of over it.
  function toBottom() {
    window.scrollTo(0, document.documentElement.scrollHeight);
  }
  toBottom();  // open at the newest message (the page also reloads after each reply)

  function bubble(role, text) {
    var div = document.createElement("div");
    div.className = "msg " + role;
    var body = document.createElement("div");
    body.className = "body";
    body.textContent = text || "";
    div.appendChild(body);
    chat.appendChild(div);
    toBottom();
    return div;
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function busy(on) {
    sendButton.hidden = on;
    stopButton.hidden = !on;
    input.disabled = on;
  }

  function post(url, payload) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(payload || {})
    });
  }

  // Read a text/event-stream response body frame by frame and call handlers[event](data).
  // fetch (not EventSource) so that sending and streaming are one POST, and so that a dropped
  // connection is never silently re-requested (that would be a second model call).
  function readEvents(response, handlers) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function frame(text) {
      var event = "message", data = "";
      text.split("\n").forEach(function (line) {
        if (line.indexOf("event: ") === 0) { event = line.slice(7); }
        else if (line.indexOf("data: ") === 0) { data += line.slice(6); }
      });
      if (data && handlers[event]) { handlers[event](JSON.parse(data)); }
    }
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) { return; }
        buffer += decoder.decode(chunk.value, {stream: true});
        var end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          frame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
        return pump();
      });
    }
    return pump();
  }

  function isEventStream(response) {
    return (response.headers.get("Content-Type") || "").indexOf("text/event-stream") === 0;
  }

  // Stream one reply into a new assistant bubble. `onMessage` receives the stored participant
  // message when the response starts with it (sending); regenerate streams start at "start".
  // `onDone` (the voice page) takes over a completed reply instead of the page reload, so the
  // reply can be spoken in place; `onSpeak` (the voice page) receives each finished sentence's
  // `speak` event while the reply streams.
  function streamReply(response, onMessage, onDone, onSpeak) {
    var replyBubble = null;
    var finished = false;
    busy(true);
    function body() {
      replyBubble = replyBubble || bubble("assistant", "");
      return replyBubble.querySelector(".body");
    }
    function finish(errorText) {
      if (finished) { return; }
      finished = true;
      if (errorText) { showError(errorText); }
      current = null;
      busy(false);
      window.location.reload();
    }
    // A failure on our side: the database or Redis may still be down, so no reload (it could
    // fail too). Keep what arrived on screen and offer a retry of this reply in place.
    function failInPlace(data) {
      if (finished) { return; }
      finished = true;
      current = null;
      busy(false);
      showError(strings.internal);
      body();
      retryButton(replyBubble, data.retry_url);
    }
    return readEvents(response, {
      message: function (data) {
        current = {stopUrl: stopUrlFor(data.message.id)};
        onMessage(data);
      },
      start: function () { body(); },
      speak: function (data) {
        if (onSpeak) { onSpeak(data); }
      },
      delta: function (data) {
        body().textContent += data.t;
        toBottom();
      },
      done: function (data) {
        body().innerHTML = data.html;  // sanitized on the server
        if (onDone && !finished) {
          finished = true;
          current = null;
          busy(false);
          onDone(data);
          return;
        }
        finish("");
      },
      error: function (data) {
        if (data.code === "internal") { failInPlace(data); return; }
        finish(strings.interrupted);
      }
    }).then(function () {
      finish(strings.interrupted);  // the body ended without a done or error event
    }, function () {
      finish(strings.interrupted);  // the connection dropped mid-reply
    });
  }

  // A "Retry" button under a bubble; the chat's click handler streams a new reply from its URL.
  function retryButton(bubbleDiv, url) {
    if (!url) { return; }
    var meta = document.createElement("div");
    meta.className = "meta";
    var button = document.createElement("button");
    button.type = "button";
    button.className = "secondary regenerate";
    button.dataset.url = url;
    button.textContent = strings.retry;
    meta.appendChild(button);
    bubbleDiv.appendChild(meta);
  }

  function showSent(data) {
    pendingRequestId = null;
    input.value = "";
    bubble("user", data.message.text);
    if (data.crisis) {
      crisisBox.innerHTML = data.crisis.html;  // sanitized on the server
      crisisBox.hidden = false;
      toBottom();
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || current) { return; }
    showError("");
    pendingRequestId = pendingRequestId || (window.crypto && crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());
    current = {stopUrl: null};
    busy(true);
    post(chat.dataset.replyUrl, {
      text: text,
      client_request_id: pendingRequestId,
      tz_offset: -new Date().getTimezoneOffset()
    }).then(function (response) {
      if (response.ok && isEventStream(response)) { return streamReply(response, showSent); }
      return response.json().then(function (data) {
        current = null;
        busy(false);
        if (data.redirect) { window.location.href = data.redirect; return; }
        if (data.stored && data.message) {
          // A 503 after the message was saved: show it as sent, with a retry for its reply.
          showSent(data);
          showError(data.error);
          retryButton(bubble("assistant", ""), data.retry_url);
          return;
        }
        // Not stored (a 503 says so, "retryable"): the text stays in the box and the next
        // Send reuses the same request id, so the message is stored once.
        if (!response.ok) { showError(data.error); return; }
        // Already stored by an earlier attempt of this click: show it with its retry button.
        pendingRequestId = null;
        window.location.reload();
      });
    }).catch(function () {
      current = null;
      busy(false);
      showError(strings.network);  // the text stays in the box; the same request id is reused
    });
  });

  // For chat/voice.js: the voice page sends recordings through the same stream handling.
  window.studyChat = {
    csrf: csrf,
    strings: strings,
    streamReply: streamReply,
    showSent: showSent,
    showError: showError,
    isEventStream: isEventStream,
    retryButton: retryButton,
    bubble: bubble,
    // One send at a time, typed or spoken: claim() is false while another is under way.
    claim: function () {
      if (current) { return false; }
      current = {stopUrl: null};
      busy(true);
      return true;
    },
    release: function () {
      current = null;
      busy(false);
    },
    // Stop the reply being streamed (the voice page's own Stop button).
    stop: function () {
      if (current && current.stopUrl) { post(current.stopUrl); }
    }
  };

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  stopButton.addEventListener("click", function () {
    if (current && current.stopUrl) { post(current.stopUrl); }
  });

  chat.addEventListener("click", function (event) {
    var button = event.target.closest("button.regenerate");
    if (!button || current) { return; }
    showError("");
    post(button.dataset.url).then(function (r) { return r.json(); }).then(function (data) {
      if (!data.stream) { showError(data.error || strings.network); return; }
      var messageId = data.stream.match(/stream\/(\d+)\//)[1];
      current = {stopUrl: stopUrlFor(messageId)};
      return fetch(data.stream, {credentials: "same-origin"}).then(function (response) {
        if (!response.ok || !isEventStream(response)) { throw new Error("no stream"); }
        return streamReply(response, function () {});
      });
    }).catch(function () {
      current = null;
      busy(false);
      showError(strings.network);
    });
  });
})();
