// Push-to-talk for voice arms (chat/_voice.html), on top of chat.js's stream handling.
// Hold the button (pointer, or Space/Enter while it has focus) to record with MediaRecorder;
// releasing sends the clip. The server transcribes it, stores the transcript as the message
// and streams the reply (same events as typed text); when the reply's text is complete its
// speech is fetched and played. "Type instead" shows the ordinary text box.
// Nothing said is lost: a failed upload keeps the clip for "Send the recording again"; a
// transcript the server could not store is put in the text box.
// The page includes this script before chat.js; both are deferred, so wait until both ran.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var root = document.getElementById("voice");
  var chat = window.studyChat;
  if (!root || !chat) { return; }
  var talk = document.getElementById("talk-button");
  var statusLine = document.getElementById("voice-status");
  var retry = document.getElementById("voice-retry");
  var switcher = document.getElementById("voice-switch");
  var player = document.getElementById("reply-audio");
  var stopReply = document.getElementById("voice-stop");
  var form = document.getElementById("composer");
  var input = document.getElementById("message-input");
  var text = root.dataset;
  var maxMs = parseInt(text.maxSeconds, 10) * 1000;

  var recorder = null, stream = null, chunks = [], startedAt = 0, stopTimer = null;
  var lastClip = null;  // {blob, durationMs, requestId}: kept until it was stored
  var typing = false;

  function say(message) { statusLine.textContent = message || ""; }

  function setTyping(on) {
    typing = on;
    form.hidden = !on;
    talk.hidden = on;
    switcher.textContent = on ? text.labelSpeak : text.labelType;
    switcher.setAttribute("aria-pressed", on ? "true" : "false");
    if (on) { input.focus(); } else { talk.focus(); }
  }

  var supported = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia &&
                     window.MediaRecorder);
  if (!supported) {
    say(text.unsupported);
    setTyping(true);
    switcher.hidden = true;
    return;
  }
  setTyping(false);
  switcher.addEventListener("click", function () { setTyping(!typing); });

  function requestId() {
    return window.crypto && crypto.randomUUID ? crypto.randomUUID()
      : String(Date.now()) + Math.random();
  }

  function start() {
    if (recorder || !chat.claim()) { return; }
    chat.showError("");
    retry.hidden = true;
    talk.setAttribute("aria-pressed", "true");
    say(text.recording);
    navigator.mediaDevices.getUserMedia({audio: true}).then(function (media) {
      if (talk.getAttribute("aria-pressed") !== "true") {  // released before the mic opened
        media.getTracks().forEach(function (t) { t.stop(); });
        chat.release();
        say(text.tooShort);
        return;
      }
      stream = media;
      chunks = [];
      recorder = new MediaRecorder(media);
      recorder.addEventListener("dataavailable", function (e) {
        if (e.data && e.data.size) { chunks.push(e.data); }
      });
      recorder.addEventListener("stop", finished);
      startedAt = performance.now();
      recorder.start(250);
      // The server refuses longer clips; stop here so the participant is not surprised.
      stopTimer = setTimeout(stop, maxMs);
    }, function () {
      talk.setAttribute("aria-pressed", "false");
      chat.release();
      say(text.noMicrophone);
      setTyping(true);
    });
  }

  function stop() {
    talk.setAttribute("aria-pressed", "false");
    clearTimeout(stopTimer);
    if (recorder && recorder.state !== "inactive") { recorder.stop(); }
  }

  function finished() {
    var durationMs = Math.round(performance.now() - startedAt);
    var type = recorder.mimeType || "audio/webm";
    stream.getTracks().forEach(function (t) { t.stop(); });
    recorder = null;
    stream = null;
    if (durationMs < 300 || !chunks.length) {
      chat.release();
      say(text.tooShort);
      return;
    }
    lastClip = {blob: new Blob(chunks, {type: type}), durationMs: durationMs,
                requestId: requestId()};
    send(lastClip);
  }

  function send(clip) {
    say(text.sending);
    var body = new FormData();
    var ext = clip.blob.type.indexOf("ogg") >= 0 ? "ogg" : clip.blob.type.indexOf("mp4") >= 0 ? "mp4" : "webm";
    body.append("audio", clip.blob, "clip." + ext);
    body.append("duration_ms", String(clip.durationMs));
    body.append("client_request_id", clip.requestId);
    body.append("tz_offset", String(-new Date().getTimezoneOffset()));
    fetch(root.dataset.voiceUrl, {
      method: "POST", credentials: "same-origin",
      headers: {"X-CSRFToken": chat.csrf}, body: body
    }).then(function (response) {
      if (response.ok && chat.isEventStream(response)) {
        lastClip = null;
        say("");
        var typed = input.value;
        stopReply.hidden = false;  // the text box's Stop button is hidden with it
        sentences = 0;
        return chat.streamReply(response, function (data) {
          chat.showSent(data);
          input.value = typed;  // a draft in the (hidden) text box stays
        }, speak, sentence).then(function () { stopReply.hidden = true; });
      }
      return response.json().then(function (data) { refused(response, data, clip); });
    }).catch(function () {
      chat.release();
      offerRetry(chat.strings.network);
    });
  }

  function refused(response, data, clip) {
    chat.release();
    say("");
    if (data.redirect) { window.location.href = data.redirect; return; }
    if (response.ok) {  // stored by an earlier attempt whose answer was lost
      window.location.reload();
      return;
    }
    if (data.stored && data.message) {
      chat.showSent(data);
      chat.showError(data.error);
      chat.retryButton(chat.bubble("assistant", ""), data.retry_url);
      return;
    }
    if (data.transcript) {
      // Transcribed but not stored: the words go to the text box, to send when possible.
      lastClip = null;
      setTyping(true);
      input.value = data.transcript;
      chat.showError(data.error);
      return;
    }
    if (data.retryable || response.status >= 500) { offerRetry(data.error); return; }
    lastClip = null;
    chat.showError(data.error);
  }

  function offerRetry(message) {
    chat.showError(message);
    retry.hidden = !lastClip;
  }

  stopReply.addEventListener("click", function () { chat.stop(); });

  retry.addEventListener("click", function () {
    if (!lastClip || !chat.claim()) { return; }
    retry.hidden = true;
    chat.showError("");
    send(lastClip);
  });

  // Sentence by sentence while the reply streams: each `speak` event's audio is fetched at once
  // (so the next is ready when one ends) and played in order.
  var sentences = 0;
  var queue = [];
  var playing = false;

  function sentence(data) {
    sentences += 1;
    var url = root.dataset.segmentUrl.replace(/\/sid\/0\/$/, "/" + data.sid + "/" + data.i + "/");
    queue.push(fetch(url, {method: "POST", credentials: "same-origin",
                           headers: {"X-CSRFToken": chat.csrf}}).then(function (response) {
      if (response.ok) { return response.blob(); }
      return response.json().then(function (body) { chat.showError(body.error); return null; });
    }).catch(function () { chat.showError(text.speechFailed); return null; }));
    if (!playing) { playNext(); }
  }

  function playNext() {
    var next = queue.shift();
    if (!next) { playing = false; say(""); return; }
    playing = true;
    say(text.speaking);
    next.then(function (blob) {
      if (!blob) { playNext(); return; }
      play(blob);
    });
  }

  function play(blob) {
    if (player.dataset.objectUrl) { URL.revokeObjectURL(player.dataset.objectUrl); }
    player.dataset.objectUrl = URL.createObjectURL(blob);
    player.src = player.dataset.objectUrl;
    player.hidden = false;
    return player.play().then(function () { say(""); }, function () {
      say(text.pressPlay);  // autoplay refused: the controls are on screen
    });
  }

  player.addEventListener("ended", function () { if (playing) { playNext(); } });

  // The reply's text is complete. Spoken already sentence by sentence; otherwise (a reply the
  // stream could not split, e.g. Redis failed) fetch the whole reply's speech and play it.
  function speak(done) {
    if (sentences > 0) { return; }
    var url = root.dataset.speechUrl.replace(/\/0\/speech\/$/, "/" + done.reply + "/speech/");
    say(text.speaking);
    fetch(url, {method: "POST", credentials: "same-origin",
                headers: {"X-CSRFToken": chat.csrf}}).then(function (response) {
      if (!response.ok) {
        return response.json().then(function (data) { say(""); chat.showError(data.error); });
      }
      return response.blob().then(play);
    }).catch(function () { say(""); chat.showError(text.speechFailed); });
  }

  // Pointer: press and hold anywhere on the button; leaving or cancelling also sends.
  talk.addEventListener("pointerdown", function (e) {
    if (e.button !== 0) { return; }
    e.preventDefault();
    talk.setPointerCapture(e.pointerId);
    start();
  });
  talk.addEventListener("pointerup", stop);
  talk.addEventListener("pointercancel", stop);
  talk.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  // Keyboard: hold Space or Enter.
  talk.addEventListener("keydown", function (e) {
    if ((e.key === " " || e.key === "Enter") && !e.repeat) { e.preventDefault(); start(); }
    else if (e.key === " " || e.key === "Enter") { e.preventDefault(); }
  });
  talk.addEventListener("keyup", function (e) {
    if (e.key === " " || e.key === "Enter") { e.preventDefault(); stop(); }
  });
});
