// Parley room page: one WebSocket to /rooms/{room}/ws, reconnecting by itself.
//
// Guarantees the page keeps (see docs/protocol.md):
//   - a message is shown once: frames with seq <= the last shown seq are dropped, and
//     a reconnect asks only for seq > that (after=SEQ);
//   - a message typed here is kept until the server acknowledges it and is sent again,
//     with the same id, after every reconnect (the server stores a resend only once);
//   - user text only ever reaches the page through textContent, never as HTML.
'use strict';

(function () {
  var root = document.getElementById('room');
  if (!root) { return; }

  var ROOM = root.dataset.room;
  var YOU = root.dataset.you;
  var MAX_TEXT = parseInt(root.dataset.maxText, 10) || 4000;
  var BYE_TEXT = root.dataset.byeText || 'Bye!';

  var BACKOFF_BASE_MS = 500;
  var BACKOFF_CAP_MS = 15000;
  var RATE_RETRY_MS = 2000;
  var MAX_GAP_RETRIES = 3;
  var MAX_ENDED_RECONNECTS = 5;
  var CLOSE_GOING_AWAY = 1001;
  var CLOSE_POLICY = 1008;
  var CLOSE_ROOM_FULL = 4003;

  // Human words for every error code of the protocol.
  var ERROR_TEXT = {
    room_full: 'This room already has two people in a chat. Pick another room name, or wait until their chat ends.',
    chat_ended: 'This chat has ended; no more messages can be sent in it.',
    invalid_frame: 'The server did not understand what the page sent. Reload the page and try again.',
    too_long: 'That message is too long: a message has at most ' + MAX_TEXT + ' characters.',
    empty: 'A message cannot be empty.',
    rate_limited: 'You are sending messages too quickly. Waiting a moment before sending again…',
    not_allowed: 'You are not allowed to do that in this chat.'
  };

  var el = {
    status: document.getElementById('status'),
    statusText: document.getElementById('status-text'),
    myRole: document.getElementById('my-role'),
    peer: document.getElementById('peer'),
    peerRole: document.getElementById('peer-role'),
    presence: document.getElementById('peer-presence'),
    presenceText: document.getElementById('peer-presence-text'),
    peerState: document.getElementById('peer-state'),
    list: document.getElementById('messages'),
    empty: document.getElementById('empty'),
    scroller: document.querySelector('.conversation'),
    banner: document.getElementById('banner'),
    form: document.getElementById('composer'),
    text: document.getElementById('text'),
    count: document.getElementById('count'),
    send: document.getElementById('send'),
    bye: document.getElementById('bye'),
    end: document.getElementById('end'),
    typing: document.getElementById('typing'),
    pill: document.getElementById('new-pill'),
    notify: document.getElementById('notify'),
    startChat: document.getElementById('start-chat'),
    startChatText: document.getElementById('start-chat-text')
  };

  var state = {
    ws: null,
    welcomed: false,     // the current socket has had its welcome frame
    session: '',         // session id from the first welcome; reattaches after an end
    lastSeq: 0,          // highest seq shown
    role: '',
    peer: null,
    ended: false,
    transcript: '',
    stopped: false,      // no more reconnects (room full, transcript received…)
    attempt: 0,          // reconnects since the last welcome, for backoff
    failedOpens: 0,      // sockets that closed before any welcome
    timer: 0,
    tick: 0,             // the reconnect countdown's interval
    leavingID: '',       // the bye that, once stored, takes this person out of the chat
    left: false,         // said bye and left: no socket until they come back
    endRequested: false, // End chat pressed, not yet confirmed by an ended frame
    counter: 0,
    gapRetries: 0,
    endNoticeShown: false,
    endedReconnects: 0   // reconnects after the end, waiting for the transcript
  };

  // Live signals (docs/protocol.md, v1.1): typing, receipts, unread count. signals is
  // true once a welcome carried "receipts", i.e. the server knows these frames.
  var live = {
    signals: false,
    peerCursor: { received: 0, read: 0 }, // the other person's receipts
    sentReceived: 0,  // our cursors as the server has them
    sentRead: 0,
    receiptTimer: 0,
    typingSentAt: 0,
    typingTimer: 0,
    peerOnline: null, // last presence told, null before the first
    lastDay: '',      // the day of the last confirmed message, for separators
    welcomeLastSeq: 0,
    theirSeqs: [],    // seqs of the other person's messages, in order
    baseTitle: document.title
  };

  // Messages typed here and not yet acknowledged, by client id, in send order.
  var pending = new Map();
  // List items of messages typed here, by client id, until their message frame arrives.
  var ownItems = new Map();
  var idPrefix = 'c-' + randomToken() + '-';

  function randomToken() {
    var bytes = new Uint8Array(8);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
  }

  function nextID() {
    state.counter += 1;
    return idPrefix + state.counter;
  }

  // ---- status line, banner, header ----

  function setStatus(kind, text) {
    el.status.dataset.state = kind;
    el.statusText.textContent = text;
  }

  function showBanner(kind, text, link) {
    el.banner.textContent = text;
    if (link) {
      el.banner.appendChild(document.createTextNode(' '));
      el.banner.appendChild(link);
    }
    el.banner.dataset.kind = kind;
    el.banner.hidden = false;
  }

  function hideBanner() {
    el.banner.hidden = true;
    el.banner.dataset.reason = '';
    el.banner.textContent = '';
  }

  function makeLink(href, text) {
    var a = document.createElement('a');
    a.href = href;
    a.textContent = text;
    return a;
  }

  function roleLabel(role) {
    return role === 'host' ? 'host' : role === 'participant' ? 'participant' : '';
  }

  function setBadge(badge, role) {
    badge.textContent = roleLabel(role);
    badge.hidden = !role;
  }

  function showPeer(email) {
    state.peer = email || null;
    el.presence.hidden = !state.peer;
    if (state.peer) {
      el.peer.textContent = state.peer;
      setBadge(el.peerRole, state.role === 'host' ? 'participant' : state.role === 'participant' ? 'host' : '');
    } else {
      el.peer.textContent = 'waiting for the other person — tell them to join room “' + ROOM + '”';
      setBadge(el.peerRole, '');
    }
  }

  // showPresenceText shows a state of the other person that is not news from the
  // server: "connection lost" while this page is offline, "chat ended" after the end.
  function showPresenceText(text) {
    el.presence.dataset.online = 'unknown';
    el.presence.title = text;
    el.presenceText.textContent = text;
    if (el.peerState) { el.peerState.textContent = text; el.peerState.hidden = false; }
  }

  function showPresence(online) {
    if (el.peerState) { el.peerState.hidden = true; el.peerState.textContent = ''; }
    el.presence.dataset.online = online ? 'true' : 'false';
    el.presence.title = online ? 'online' : 'offline';
    el.presenceText.textContent = online ? 'online' : 'offline';
  }

  function setInputEnabled(on) {
    el.text.disabled = !on;
    el.send.disabled = !on;
    el.bye.disabled = !on;
    el.end.disabled = !on;
  }

  // ---- message list ----

  function nearBottom() {
    var s = el.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollToBottom() {
    el.scroller.scrollTop = el.scroller.scrollHeight;
  }

  // firstPending is the first item still waiting for its message frame: confirmed
  // messages go before it, so the list stays in seq order with unconfirmed ones last.
  function firstPending() {
    return el.list.querySelector('li[data-seq=""]');
  }

  function formatTime(iso) {
    var d = iso ? new Date(iso) : new Date();
    if (isNaN(d.getTime())) { d = new Date(); }
    return d;
  }

  // LINK_RE finds http(s) links in message text; a trailing full stop, comma or
  // closing bracket is left out, as people write "see https://example.org/x."
  var LINK_RE = /https?:\/\/[^\s<>"']+/g;
  var TRAILING_RE = /[.,;:!?)\]}]+$/;

  // appendLinkified puts text into node as text nodes, and its http(s) links as <a>
  // elements built from the DOM (never HTML), opening in a new tab without a referrer
  // or a handle on this page.
  function appendLinkified(node, text) {
    var last = 0;
    LINK_RE.lastIndex = 0;
    var m;
    while ((m = LINK_RE.exec(text)) !== null) {
      var url = m[0].replace(TRAILING_RE, '');
      var href = url.length > 'https://'.length ? safeURL(url) : '';
      if (!href) { continue; }
      if (m.index > last) { node.appendChild(document.createTextNode(text.slice(last, m.index))); }
      var a = document.createElement('a');
      a.href = href;
      a.rel = 'noopener noreferrer';
      a.target = '_blank';
      a.textContent = url;
      node.appendChild(a);
      last = m.index + url.length;
      LINK_RE.lastIndex = last;
    }
    if (last < text.length) { node.appendChild(document.createTextNode(text.slice(last))); }
  }

  // newItem builds a message item; text goes in as text nodes and DOM-built links only.
  function newItem(from, kind, text) {
    var li = document.createElement('li');
    var mine = from === YOU;
    li.className = 'msg ' + (mine ? 'mine' : 'theirs') + (kind && kind !== 'chat' ? ' ' + kind : '');
    li.dataset.seq = '';
    var bubble = document.createElement('div');
    bubble.className = 'bubble';
    var p = document.createElement('p');
    p.className = 'text';
    appendLinkified(p, text);
    bubble.appendChild(p);
    var meta = document.createElement('div');
    meta.className = 'meta';
    var who = document.createElement('span');
    who.className = 'who';
    who.textContent = mine ? 'You' : from;
    var time = document.createElement('time');
    var tick = document.createElement('span');
    tick.className = 'tick';
    meta.appendChild(who);
    meta.appendChild(time);
    meta.appendChild(tick);
    li.appendChild(bubble);
    li.appendChild(meta);
    return li;
  }

  function setItemTime(li, iso) {
    var d = formatTime(iso);
    var t = li.querySelector('time');
    t.dateTime = d.toISOString();
    t.title = d.toLocaleString();
    t.textContent = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function setItemState(li, st, label) {
    li.dataset.state = st;
    li.querySelector('.tick').textContent = label;
  }

  function addItem(li, beforeNode) {
    var stick = nearBottom();
    el.list.insertBefore(li, beforeNode || null);
    el.empty.hidden = true;
    if (stick || li.classList.contains('mine')) { scrollToBottom(); }
  }

  function addNotice(text) {
    var li = document.createElement('li');
    li.className = 'notice';
    li.dataset.seq = '0';
    li.textContent = text;
    addItem(li, firstPending());
  }

  // ---- frames from the server ----

  function onWelcome(f) {
    if (state.session && f.session && f.session !== state.session) {
      // A different chat than the one shown (the server could not reattach): start
      // over from its first message rather than mix two chats.
      state.session = f.session;
      state.lastSeq = 0;
      Array.prototype.forEach.call(el.list.querySelectorAll('li:not([data-seq=""])'), function (li) { li.remove(); });
      resetSignals();
      reconnectNow();
      return;
    }
    state.session = f.session || state.session;
    root.dataset.session = state.session;
    state.welcomed = true;
    state.attempt = 0;
    state.failedOpens = 0;
    state.role = f.role || '';
    setBadge(el.myRole, state.role);
    showPeer(f.peer);
    if (typeof f.peer_online === 'boolean') { showPresence(f.peer_online); }
    if (f.status && f.status !== 'inprogress') {
      markEnded(null); // the server follows with the ended frame naming who ended it
    } else {
      setStatus('connected', 'Connected');
      setInputEnabled(true);
      hideBanner();
    }
    if (f.transcript) { onTranscript({ url: f.transcript }); }
    signalsWelcome(f);
    flushPending();
    if (state.endRequested && !state.ended) { transmit({ type: 'end' }); }
  }

  function onMessage(f) {
    if (typeof f.seq !== 'number' || f.seq <= state.lastSeq) {
      if (f.id && pending.has(f.id) && f.from === YOU) { confirmOwn(f.id, 'sent'); }
      return; // already shown
    }
    if (f.seq > state.lastSeq + 1 && state.gapRetries < MAX_GAP_RETRIES) {
      // A gap: something was missed. Ask again from the last seq shown (a few times;
      // after that, show what there is rather than loop).
      state.gapRetries += 1;
      reconnectNow();
      return;
    }
    state.gapRetries = 0;
    var li = f.from === YOU && f.id ? ownItems.get(f.id) : null;
    if (li) {
      ownItems.delete(f.id);
      pending.delete(f.id);
    } else {
      li = newItem(f.from, f.kind, f.text);
    }
    li.dataset.seq = String(f.seq);
    setItemTime(li, f.at);
    setItemState(li, 'sent', f.from === YOU ? '✓' : '');
    addDaySeparator(f.at);
    var wasNearBottom = nearBottom();
    addItem(li, firstPending());
    state.lastSeq = f.seq;
    signalsMessage(f, li, wasNearBottom);
  }

  function confirmOwn(id, st) {
    pending.delete(id);
    if (id === state.leavingID && st === 'sent') { window.setTimeout(leave, 0); }
    var li = ownItems.get(id);
    if (li) { setItemState(li, st, st === 'sent' ? '✓' : 'not sent'); }
  }

  function onAck(f) {
    if (f.id) { confirmOwn(f.id, 'sent'); }
  }

  function onPresence(f) {
    if (!f.email || f.email === YOU) { return; }
    presenceNotice(f);
    if (!state.peer) { showPeer(f.email); }
    if (f.email !== state.peer || state.ended) { return; }
    // degraded: the server could not read presence, so online is only a guess; say
    // so rather than show the other person as gone. Chatting works as usual.
    if (f.degraded) { showPresenceText('status unknown'); } else { showPresence(!!f.online); }
  }

  function markEnded(by) {
    state.ended = true;
    if (by && !state.endNoticeShown) {
      state.endNoticeShown = true;
      addNotice('Chat ended by ' + (by === YOU ? 'you' : by) + '.');
    }
    state.endRequested = false;
    setInputEnabled(false);
    el.text.placeholder = 'This chat has ended.';
    hideTyping();
    showPresenceText('chat ended');
    showStartChat('This chat has ended.');
    revealEnd();
    pending.forEach(function (_, id) { confirmOwn(id, 'failed'); });
    if (!state.transcript) {
      var text = by ? 'Chat ended by ' + (by === YOU ? 'you' : by) + ' — the transcript is on its way by email.'
        : 'This chat has ended — the transcript is on its way by email.';
      setStatus('ended', text);
    }
  }

  // revealEnd brings the end of the conversation into view once the start-chat bar
  // has taken its room below it.
  function revealEnd() {
    scrollToBottom();
    window.requestAnimationFrame(scrollToBottom);
  }

  function onEnded(f) {
    markEnded(f.by || null);
  }

  function safeURL(href) {
    try {
      var u = new URL(href, window.location.href);
      return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : '';
    } catch (e) {
      return '';
    }
  }

  function onTranscript(f) {
    var href = safeURL(f.url);
    if (!href) { return; }
    state.transcript = href;
    if (!state.ended) { markEnded(null); }
    state.stopped = true;
    el.statusText.textContent = 'Chat ended — the transcript was emailed. ';
    el.statusText.appendChild(makeLink(href, 'Download the transcript'));
    el.status.dataset.state = 'ended';
  }

  function onError(f) {
    var text = ERROR_TEXT[f.code] || f.message || 'Something went wrong.';
    switch (f.code) {
      case 'room_full':
        roomFull();
        return;
      case 'chat_ended':
        markEnded(null);
        return;
      case 'no_chat':
        noChat();
        return;
      case 'rate_limited':
        if (!state.welcomed) { showBanner('warn', f.message || text); return; } // too many tabs: the server says so
        showBanner('warn', text);
        window.setTimeout(function () { hideBanner(); flushPending(); },
          f.retry_after_ms > 0 ? f.retry_after_ms : RATE_RETRY_MS);
        return;
      case 'too_long':
      case 'empty':
      case 'invalid_frame':
        if (f.id && pending.has(f.id)) { confirmOwn(f.id, 'failed'); } // resending cannot help
        showBanner('error', text);
        return;
      default:
        showBanner('error', text);
    }
  }

  var handlers = {
    welcome: onWelcome, message: onMessage, ack: onAck, presence: onPresence,
    ended: onEnded, transcript: onTranscript, error: onError,
    typing: onTyping, receipt: onReceipt
  };

  // ---- live signals: typing, receipts, unread, notices, days ----

  function resetSignals() {
    live.lastDay = '';
    live.theirSeqs = [];
    live.peerCursor = { received: 0, read: 0 };
    live.sentReceived = 0;
    live.sentRead = 0;
    updateTitle();
  }

  function signalsWelcome(f) {
    live.signals = !!f.receipts && typeof f.receipts === 'object';
    live.welcomeLastSeq = typeof f.last_seq === 'number' ? f.last_seq : 0;
    if (!live.signals) { return; }
    var mine = f.receipts[YOU];
    if (mine) {
      live.sentReceived = Math.max(live.sentReceived, mine.received || 0);
      live.sentRead = Math.max(live.sentRead, mine.read || 0);
    }
    if (f.peer && f.receipts[f.peer]) { applyPeerCursor(f.receipts[f.peer]); }
    scheduleReceipts(0);
  }

  // sendTyping tells the other person that this one is typing, at most every 2 s.
  function sendTyping() {
    if (!live.signals || state.ended || el.text.value.trim() === '') { return; }
    var now = Date.now();
    if (now - live.typingSentAt < 2000) { return; }
    if (transmit({ type: 'typing' })) { live.typingSentAt = now; }
  }

  function onTyping(f) {
    if (!f.from || f.from === YOU || state.ended) { return; }
    el.typing.textContent = f.from + ' is typing…';
    el.typing.hidden = false;
    if (live.typingTimer) { window.clearTimeout(live.typingTimer); }
    live.typingTimer = window.setTimeout(hideTyping, 4000);
  }

  function hideTyping() {
    if (live.typingTimer) { window.clearTimeout(live.typingTimer); live.typingTimer = 0; }
    el.typing.hidden = true;
    el.typing.textContent = '';
  }

  function onReceipt(f) {
    if (!f.by) { return; }
    if (f.by === YOU) { // another tab of ours moved our cursors
      live.sentReceived = Math.max(live.sentReceived, f.received || 0);
      live.sentRead = Math.max(live.sentRead, f.read || 0);
      updateTitle();
      return;
    }
    applyPeerCursor(f);
  }

  // applyPeerCursor moves the other person's cursors forward and redraws the ticks of
  // our messages: ✓ stored, ✓✓ in their browser, ✓✓ highlighted once read.
  function applyPeerCursor(c) {
    var rec = Math.max(live.peerCursor.received, c.received || 0, c.read || 0);
    var read = Math.max(live.peerCursor.read, c.read || 0);
    if (rec === live.peerCursor.received && read === live.peerCursor.read) { return; }
    live.peerCursor = { received: rec, read: read };
    Array.prototype.forEach.call(el.list.querySelectorAll('li.msg.mine'), ownTick);
  }

  function ownTick(li) {
    var seq = parseInt(li.dataset.seq, 10);
    if (!(seq > 0)) { return; }
    if (seq <= live.peerCursor.read) {
      setItemState(li, 'read', '✓✓');
      li.querySelector('.tick').title = 'read';
    } else if (seq <= live.peerCursor.received) {
      setItemState(li, 'delivered', '✓✓');
      li.querySelector('.tick').title = 'delivered';
    }
  }

  function signalsMessage(f, li, wasNearBottom) {
    if (f.from === YOU) {
      ownTick(li);
    } else {
      live.theirSeqs.push(f.seq);
      if (el.typing.textContent.indexOf(f.from + ' ') === 0) { hideTyping(); }
      if (!wasNearBottom) { el.pill.hidden = false; }
      notifyMessage(f);
    }
    updateTitle();
    scheduleReceipts(150);
  }

  // scheduleReceipts sends our cursors soon: received up to the last message shown,
  // read up to the last message on screen while the tab is visible.
  function scheduleReceipts(delay) {
    if (!live.signals || live.receiptTimer) { return; }
    live.receiptTimer = window.setTimeout(sendReceipts, delay);
  }

  function sendReceipts() {
    live.receiptTimer = 0;
    if (!live.signals) { return; }
    if (state.lastSeq > live.sentReceived && transmit({ type: 'received', seq: state.lastSeq })) {
      live.sentReceived = state.lastSeq;
    }
    var read = readUpTo();
    if (read > live.sentRead && transmit({ type: 'read', seq: read })) {
      live.sentRead = read;
      live.sentReceived = Math.max(live.sentReceived, read);
    }
    updateTitle();
  }

  // readUpTo is the highest seq of a message that is on screen now, 0 when the tab is
  // hidden: messages are shown in seq order, so everything before it was passed.
  function readUpTo() {
    if (document.visibilityState !== 'visible') { return 0; }
    var box = el.scroller.getBoundingClientRect();
    var items = el.list.children;
    for (var i = items.length - 1; i >= 0; i--) {
      var li = items[i];
      var seq = parseInt(li.dataset.seq, 10);
      if (!(seq > 0)) { continue; }
      var r = li.getBoundingClientRect();
      if (r.top < box.bottom && r.bottom > box.top) { return seq; }
      if (r.bottom <= box.top) { return 0; } // scrolled above everything still unread
    }
    return 0;
  }

  function unreadCount() {
    var n = 0;
    for (var i = live.theirSeqs.length - 1; i >= 0 && live.theirSeqs[i] > live.sentRead; i--) { n++; }
    return n;
  }

  function updateTitle() {
    var n = unreadCount();
    var t = (n > 0 ? '(' + n + ') ' : '') + live.baseTitle;
    if (document.title !== t) { document.title = t; }
  }

  function onScroll() {
    if (nearBottom()) { hidePill(); }
    scheduleReceipts(200);
  }

  function hidePill() { el.pill.hidden = true; }

  // ---- desktop notifications, once the person allows them ----

  function notificationsSupported() { return typeof window.Notification === 'function'; }

  function setupNotifications() {
    if (!notificationsSupported() || Notification.permission !== 'default') { return; }
    el.notify.hidden = false;
    el.notify.addEventListener('click', function () {
      Promise.resolve(Notification.requestPermission()).then(function () {
        el.notify.hidden = Notification.permission !== 'default'; // answered: nothing more to ask
      });
    });
  }

  function notifyMessage(f) {
    if (f.seq <= live.welcomeLastSeq || document.visibilityState === 'visible') { return; }
    if (!notificationsSupported() || Notification.permission !== 'granted') { return; }
    try {
      var n = new Notification(f.from, { body: f.text, tag: 'parley-' + ROOM });
      n.onclick = function () { window.focus(); n.close(); };
    } catch (e) { /* some browsers allow notifications only from a service worker */ }
  }

  // ---- notices in the timeline ----

  function presenceNotice(f) {
    var online = !!f.online;
    var before = live.peerOnline;
    if (f.degraded) { return; } // a guess, not news
    live.peerOnline = online;
    if (before === online || state.ended) { return; }
    if (before === null && !(online && !state.peer)) { return; } // the state on connecting
    addNotice(f.email + (online ? ' joined' : ' left'));
  }

  function dayLabel(d) {
    var today = new Date();
    var yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (d.toDateString() === today.toDateString()) { return 'Today'; }
    if (d.toDateString() === yesterday.toDateString()) { return 'Yesterday'; }
    return d.toLocaleDateString([], { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
  }

  // addDaySeparator puts the day, in the reader's own zone, before the first message
  // of each day.
  function addDaySeparator(iso) {
    var d = formatTime(iso);
    var key = d.toDateString();
    if (key === live.lastDay) { return; }
    live.lastDay = key;
    var li = document.createElement('li');
    li.className = 'day';
    li.dataset.seq = '0';
    li.dataset.day = key;
    li.textContent = dayLabel(d);
    el.list.insertBefore(li, firstPending());
  }

  // ---- no chat here, or the chat has ended: offer a new one ----

  function showStartChat(text) {
    el.startChatText.textContent = text;
    el.startChat.hidden = false;
  }

  function noChat() {
    stop('ended', 'No chat');
    el.presence.hidden = true;
    el.peer.textContent = '—';
    el.empty.textContent = 'You have no chat in room “' + ROOM + '” yet.';
    showStartChat('Start one, then send the other person the room name.');
  }

  // ---- the socket ----

  function wsURL() {
    var proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    var u = proto + '//' + window.location.host + '/rooms/' + encodeURIComponent(ROOM) +
      '/ws?after=' + state.lastSeq;
    if (state.session) { u += '&session=' + encodeURIComponent(state.session); }
    return u;
  }

  function connect() {
    state.timer = 0;
    window.clearInterval(state.tick);
    if (state.stopped || state.ws) { return; }
    state.welcomed = false;
    if (!state.ended) {
      setStatus(state.session ? 'reconnecting' : 'connecting', state.session ? 'Reconnecting…' : 'Connecting…');
    }
    var ws;
    try {
      ws = new WebSocket(wsURL());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    ws.onmessage = function (ev) {
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      var h = f && handlers[f.type];
      if (h) { h(f); }
    };
    ws.onclose = function (ev) { onClose(ws, ev); };
  }

  function onClose(ws, ev) {
    if (state.ws !== ws) { return; }
    var hadWelcome = state.welcomed;
    state.ws = null;
    state.welcomed = false;
    if (ev.code === CLOSE_ROOM_FULL || (ev.code === CLOSE_POLICY && el.status.dataset.state === 'failed')) {
      roomFull();
      return;
    }
    if (state.stopped) { return; }
    if (state.ended && !state.transcript) {
      // The chat is over. Reattaching to it a few times catches the transcript frame
      // if the export finishes meanwhile; after that, the email and history have it.
      state.endedReconnects += 1;
      if (state.endedReconnects > MAX_ENDED_RECONNECTS) {
        stop('ended', 'Chat ended — the transcript is on its way by email.');
        showBanner('info', 'The transcript will also be listed in your', makeLink('/history', 'chat history'));
        return;
      }
    }
    if (!hadWelcome) { state.failedOpens += 1; }
    if (state.failedOpens >= 3) { checkSignedIn(); }
    scheduleReconnect(ev.code === CLOSE_GOING_AWAY);
  }

  // scheduleReconnect waits a capped, jittered, growing delay; a server going away
  // (another replica will take over) is retried almost at once.
  function scheduleReconnect(soon) {
    if (state.stopped || state.timer) { return; }
    var ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, state.attempt));
    var delay = soon && state.attempt === 0 ? 100 + Math.random() * 400 : ceiling / 2 + Math.random() * ceiling / 2;
    state.attempt += 1;
    state.timer = window.setTimeout(connect, delay);
    if (!state.ended) {
      if (state.peer) { showPresenceText('connection lost'); }
      countDown(Date.now() + delay);
    }
  }

  // countDown shows the wait before the next attempt, second by second, with a
  // "Retry now" button.
  function countDown(at) {
    window.clearInterval(state.tick);
    function show() {
      var left = Math.max(0, Math.ceil((at - Date.now()) / 1000));
      setStatus('reconnecting', 'Connection lost — reconnecting in ' + left + ' s… ');
      var retry = document.createElement('button');
      retry.type = 'button';
      retry.className = 'link';
      retry.id = 'retry';
      retry.textContent = 'Retry now';
      retry.addEventListener('click', wake);
      el.statusText.appendChild(retry);
    }
    show();
    state.tick = window.setInterval(function () {
      if (!state.timer) { window.clearInterval(state.tick); return; }
      show();
    }, 1000);
  }

  function reconnectNow() {
    var ws = state.ws;
    state.ws = null;
    if (ws) { ws.onclose = null; ws.close(1000, 'resync'); }
    if (state.timer) { window.clearTimeout(state.timer); state.timer = 0; }
    scheduleReconnect(true);
  }

  // roomFull turns a third person away: no chat, no retries, a way out.
  function roomFull() {
    stop('failed', 'Room full');
    el.peer.textContent = '—';
    el.presence.hidden = true;
    el.empty.textContent = 'You are not part of the chat in this room.';
    showBanner('error', ERROR_TEXT.room_full, makeLink('/', 'Choose another room'));
  }

  function stop(kind, text) {
    state.stopped = true;
    window.clearInterval(state.tick);
    if (state.timer) { window.clearTimeout(state.timer); state.timer = 0; }
    setInputEnabled(false);
    setStatus(kind, text);
  }

  // checkSignedIn asks whether the sign-in cookie is still good when the socket keeps
  // failing before its welcome: the room page redirects home without one.
  function checkSignedIn() {
    fetch(window.location.pathname, { redirect: 'manual', credentials: 'same-origin', cache: 'no-store' })
      .then(function (res) {
        if (res.type === 'opaqueredirect' || res.status === 303) {
          stop('failed', 'Signed out');
          showBanner('error', 'Your sign-in has expired.', makeLink('/signin?next=' + encodeURIComponent('/rooms/' + ROOM), 'Sign in again'));
        }
      })
      .catch(function () { /* offline: keep retrying */ });
  }

  function transmit(frame) {
    if (!state.ws || !state.welcomed || state.ws.readyState !== WebSocket.OPEN) { return false; }
    state.ws.send(JSON.stringify(frame));
    return true;
  }

  // Resends are paced below the server's default rate (20 messages a second, bursts of
  // 40): a page holding many unacknowledged messages after a reconnect is slowed by
  // nobody and refused by nobody.
  var RESEND_BURST = 20;
  var RESEND_GAP_MS = 60;
  var flushing = null; // the flush in progress: { ws, sent, timer }

  // flushPending (re)sends every unacknowledged message in order, with its own id:
  // RESEND_BURST at once, then one every RESEND_GAP_MS. Messages typed meanwhile wait
  // their turn behind the older ones, so the order is kept. A new socket starts over.
  function flushPending() {
    if (flushing) { window.clearTimeout(flushing.timer); }
    var f = { ws: state.ws, sent: new Set(), timer: 0 };
    flushing = f;
    function step(n) {
      f.timer = 0;
      if (flushing !== f || state.ws !== f.ws) { return; }
      var it = pending.values();
      for (var e = it.next(); !e.done && n > 0; e = it.next()) {
        if (f.sent.has(e.value.id)) { continue; }
        if (!transmit(e.value)) { flushing = null; return; }
        f.sent.add(e.value.id);
        n--;
      }
      var left = false;
      pending.forEach(function (frame) { if (!f.sent.has(frame.id)) { left = true; } });
      if (!left) { flushing = null; return; }
      f.timer = window.setTimeout(function () { step(1); }, RESEND_GAP_MS);
    }
    step(RESEND_BURST);
  }

  // ---- sending ----

  function codePoints(s) {
    var n = 0;
    for (var i = 0; i < s.length; i++) {
      var c = s.charCodeAt(i);
      if (c < 0xd800 || c > 0xdbff) { n++; }
    }
    return n;
  }

  function queue(frame, kind, text) {
    var li = newItem(YOU, kind, text);
    setItemTime(li, null);
    setItemState(li, 'pending', 'sending…');
    ownItems.set(frame.id, li);
    pending.set(frame.id, frame);
    addItem(li, null);
    if (!flushing) { transmit(frame); } // else the flush in progress sends it in turn
  }

  function sendText() {
    if (state.ended || state.stopped) { return; }
    var text = el.text.value;
    if (text.trim() === '') { return; }
    if (codePoints(text) > MAX_TEXT) {
      showBanner('error', ERROR_TEXT.too_long);
      el.banner.dataset.reason = 'too_long';
      return;
    }
    hideBanner();
    queue({ type: 'send', id: nextID(), text: text }, 'chat', text);
    el.text.value = '';
    saveDraft();
    updateCount();
    el.text.focus();
  }

  // sayBye sends the standard leaving message and, once it is stored, leaves: the
  // socket closes, so the other person sees this one leave. Coming back or ending the
  // chat stays possible.
  function sayBye() {
    if (state.ended || state.stopped) { return; }
    state.leavingID = nextID();
    queue({ type: 'bye', id: state.leavingID }, 'bye', BYE_TEXT);
  }

  function leave() {
    if (state.left || state.ended) { return; }
    state.leavingID = '';
    state.left = true;
    stop('left', 'You left the chat');
    var ws = state.ws;
    state.ws = null;
    if (ws) { ws.onclose = null; ws.close(1000, 'left'); }
    showPresenceText('you left');
    var actions = document.createElement('span');
    var back = document.createElement('button');
    back.type = 'button';
    back.id = 'come-back';
    back.textContent = 'Come back';
    back.addEventListener('click', function () { comeBack(false); });
    var end = document.createElement('button');
    end.type = 'button';
    end.id = 'end-after-bye';
    end.className = 'danger';
    end.textContent = 'End chat';
    end.addEventListener('click', function () {
      if (window.confirm(endQuestion())) { comeBack(true); }
    });
    actions.appendChild(back);
    actions.appendChild(document.createTextNode(' '));
    actions.appendChild(end);
    showBanner('info', 'You said bye and left the chat. The other person sees that you left.', actions);
  }

  // comeBack reconnects after a bye, and ends the chat at once when asked to.
  function comeBack(thenEnd) {
    state.left = false;
    state.stopped = false;
    hideBanner();
    state.endRequested = !!thenEnd;
    connect();
  }

  function endQuestion() {
    return state.peer ? 'End this chat for both of you? No more messages can be sent, and the transcript is emailed to you both.'
      : 'End this chat? Nobody has joined it yet; if nothing was written, nothing is emailed.';
  }

  function endChat() {
    if (state.ended || state.stopped) { return; }
    if (!window.confirm(endQuestion())) {
      return;
    }
    state.endRequested = true;
    setStatus('reconnecting', 'Ending the chat…');
    transmit({ type: 'end' });
  }

  // ---- drafts: what is typed is kept per room across reloads ----

  var DRAFT_KEY = 'parley:draft:' + ROOM;

  function saveDraft() {
    try {
      if (el.text.value) { window.localStorage.setItem(DRAFT_KEY, el.text.value); } else { window.localStorage.removeItem(DRAFT_KEY); }
    } catch (e) { /* storage full or disabled: the draft is only in the box */ }
  }

  function restoreDraft() {
    try {
      var d = window.localStorage.getItem(DRAFT_KEY);
      if (d && !el.text.value) { el.text.value = d; updateCount(); }
    } catch (e) { /* storage disabled */ }
  }

  // onDraftInput keeps the draft and clears a "too long" warning once it no longer
  // applies to what is in the box.
  function onDraftInput() {
    saveDraft();
    if (el.banner.dataset.reason === 'too_long' && codePoints(el.text.value) <= MAX_TEXT) { hideBanner(); }
  }

  function updateCount() {
    var n = codePoints(el.text.value);
    var over = n > MAX_TEXT;
    el.count.textContent = n > MAX_TEXT * 0.8 ? n + ' / ' + MAX_TEXT : '';
    el.count.dataset.over = over ? 'true' : 'false';
  }

  el.form.addEventListener('submit', function (ev) { ev.preventDefault(); sendText(); });
  el.text.addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      sendText();
    }
  });
  el.text.addEventListener('input', updateCount);
  el.text.addEventListener('input', onDraftInput);
  el.text.addEventListener('input', sendTyping);
  el.bye.addEventListener('click', sayBye);
  el.end.addEventListener('click', endChat);

  // Coming back online or to the tab: do not wait out the backoff.
  function wake() {
    if (!state.stopped && !state.ws && state.timer) {
      window.clearTimeout(state.timer);
      state.timer = 0;
      connect();
    }
  }
  window.addEventListener('online', wake);
  document.addEventListener('visibilitychange', function () { if (!document.hidden) { wake(); } });
  document.addEventListener('visibilitychange', function () { scheduleReceipts(0); });
  el.scroller.addEventListener('scroll', onScroll, { passive: true });
  el.pill.addEventListener('click', function () { scrollToBottom(); hidePill(); });
  setupNotifications();

  showPeer(null);
  restoreDraft();
  connect();
}());
