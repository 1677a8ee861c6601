// The participant's time zone schedules their surveys at the right local time: the consent form's
// hidden field gets the browser's IANA zone (a static file: the Content-Security-Policy allows no
// inline scripts).
(function () {
  "use strict";
  var tz = document.getElementById("id_timezone");
  try { if (tz) { tz.value = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } } catch (e) {}
})();
