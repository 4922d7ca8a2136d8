// Fills every sign-in form's hidden time zone field with the browser's IANA zone, so
// Parley shows times (history, ended chats, emails) on the reader's clock.
(function () {
  'use strict';
  var zone = '';
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || '';
  } catch (e) {
    zone = '';
  }
  function fill() {
    var fields = document.querySelectorAll('input[name="tz"]');
    for (var i = 0; i < fields.length; i++) {
      fields[i].value = zone;
    }
  }
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', fill);
  } else {
    fill();
  }
})();
