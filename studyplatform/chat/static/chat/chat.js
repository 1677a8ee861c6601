// The chat page: send a message, stream the reply over Server-Sent Events, stop, regenerate.
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
  var current = null;           // {source, stopUrl}

  function bubble(role, text) {
    var div = document.createElement("div");
    div.className = "msg " + role;
    var body = document.createElement("div");
    body.className = "body";
    body.textContent = text || "";
    div.appendChild(body);
    chat.appendChild(div);
    div.scrollIntoView({block: "end"});
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

  function streamReply(streamUrl, replyBubble) {
    var body = replyBubble.querySelector(".body");
    var source = new EventSource(streamUrl);
    var messageId = streamUrl.match(/stream\/(\d+)\//)[1];
    current = {source: source, stopUrl: "/p/chat/stream/" + messageId + "/stop/"};
    busy(true);
    function finish() {
      source.close();
      current = null;
      busy(false);
      window.location.reload();
    }
    source.addEventListener("delta", function (e) {
      body.textContent += JSON.parse(e.data).t;
      replyBubble.scrollIntoView({block: "end"});
    });
    source.addEventListener("done", function (e) {
      body.innerHTML = JSON.parse(e.data).html;  // sanitized on the server
      finish();
    });
    source.addEventListener("error", function (e) {
      if (e.data) { showError(strings.interrupted); }
      finish();
    });
    source.onerror = function () {
      // A dropped connection: never let EventSource reconnect (that would be a second call).
      if (current && current.source === source) { showError(strings.interrupted); finish(); }
    };
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || current) { return; }
    showError("");
    pendingRequestId = pendingRequestId || (window.crypto && crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());
    post(chat.dataset.sendUrl, {
      text: text,
      client_request_id: pendingRequestId,
      tz_offset: -new Date().getTimezoneOffset()
    }).then(function (response) {
      return response.json().then(function (data) { return {ok: response.ok, data: data}; });
    }).then(function (result) {
      if (!result.ok) { showError(result.data.error); return; }
      pendingRequestId = null;
      input.value = "";
      bubble("user", result.data.message.text);
      if (result.data.crisis) {
        crisisBox.innerHTML = result.data.crisis.html;  // sanitized on the server
        crisisBox.hidden = false;
      }
      if (result.data.stream) { streamReply(result.data.stream, bubble("assistant", "")); }
    }).catch(function () {
      showError(strings.network);  // the text stays in the box; the same request id is reused
    });
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  stopButton.addEventListener("click", function () {
    if (current) { post(current.stopUrl); }
  });

  chat.addEventListener("click", function (event) {
    var button = event.target.closest("button.regenerate");
    if (!button || current) { return; }
    post(button.dataset.url).then(function (r) { return r.json(); }).then(function (data) {
      if (data.stream) { streamReply(data.stream, bubble("assistant", "")); }
    }).catch(function () { showError(strings.network); });
  });
})();
