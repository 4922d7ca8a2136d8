package web

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"parley/internal/testenv"
)

// pillShown is true when the "New messages ↓" pill is on screen in the viewport.
const pillShown = `(function (p) {
	if (p === null || p.hidden) { return false; }
	var r = p.getBoundingClientRect();
	return r.width > 0 && r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight &&
		p.textContent === 'New messages ↓';
})(document.getElementById('new-pill'))`

// atBottom is true when the conversation is scrolled to its end.
const atBottom = `(function (s) { return s.scrollHeight - s.scrollTop - s.clientHeight < 2; })(document.querySelector('.conversation'))`

// TestBrowserNewMessagesPill: on a 390×844 phone, a reader who has scrolled up through
// a long conversation is not pulled down by a new message but shown a "New messages ↓"
// pill; tapping it goes to the end and the pill goes; a new message while at the end
// shows no pill.
func TestBrowserNewMessagesPill(t *testing.T) {
	chromium := testenv.Chromium(t)
	env := newPagesEnvAt(t, "")
	site := env.srv.URL
	chromiumCtx := startChromium(t, chromium)
	ann := newPhone(t, chromiumCtx, "ann", "Europe/London")
	bob := newBrowser(t, chromiumCtx, "bob")

	ann.join(site, "pill", "ann@example.org")
	bob.join(site, "pill", "bob@example.org")
	for _, b := range []*browser{ann, bob} {
		b.waitFor("connected", `document.getElementById('status').dataset.state === 'connected' &&
			document.getElementById('peer').textContent.includes('@example.org')`)
	}

	// Enough history that the timeline scrolls several screens on the phone.
	long := strings.Repeat("a longer message that wraps over several lines on a phone screen; ", 3)
	const history = 12
	for i := 1; i <= history; i++ {
		bob.send(fmt.Sprintf("%d: %s", i, long), true)
	}
	last := fmt.Sprintf("%d: %s", history, long)
	ann.waitForMessage(last)
	ann.waitFor("the end of the history in view", atBottom)
	if screens := evaluate[float64](ann, `(function (s) { return s.scrollHeight / s.clientHeight; })(document.querySelector('.conversation'))`); screens < 2 {
		t.Fatalf("the history is %.1f screens tall, want at least 2 for the test to mean anything", screens)
	}
	if evaluate[bool](ann, pillShown) {
		t.Fatal("the pill shows while the reader follows the conversation")
	}

	// Ann scrolls up to read an older message; Bob writes.
	ann.do("scroll up", chromedp.Evaluate[chromedp.Void](`(function (s) {
		s.scrollTop = 0; s.dispatchEvent(new Event('scroll')); })(document.querySelector('.conversation'))`))
	ann.waitFor("scrolled to the top", `document.querySelector('.conversation').scrollTop === 0`)
	bob.send("Are you still there?", true)
	ann.waitForMessage("Are you still there?")
	ann.waitFor("the pill", pillShown)
	if top := evaluate[float64](ann, `document.querySelector('.conversation').scrollTop`); top != 0 {
		t.Errorf("a new message moved the reader from the top to %.0f px", top)
	}

	// Tapping the pill goes to the end and the pill goes.
	ann.click("#new-pill")
	ann.waitFor("the end of the conversation", atBottom)
	ann.waitFor("the pill gone", `document.getElementById('new-pill').hidden`)
	if !evaluate[bool](ann, `(function (s, li) {
		var b = s.getBoundingClientRect(), r = li.getBoundingClientRect();
		return r.top >= b.top && r.bottom <= b.bottom + 1; })(document.querySelector('.conversation'), document.querySelector('#messages li.msg:last-of-type'))`) {
		t.Error("after the pill the newest message is not on screen")
	}

	// At the end already: a new message scrolls into view with no pill.
	bob.send("Good, here is one more.", true)
	ann.waitForMessage("Good, here is one more.")
	ann.waitFor("the end of the conversation", atBottom)
	if evaluate[bool](ann, `!document.getElementById('new-pill').hidden`) {
		t.Error("the pill shows for a message that arrived while the reader was at the end")
	}
	ann.checkClean()
	bob.checkClean()
}

// notificationStub replaces the browser's Notification before the page's scripts run:
// it records every notification the page makes (with whether the tab was hidden), and
// grants permission when asked, as a person clicking Allow does.
const notificationStub = `(function () {
	var made = [];
	function Notification(title, options) {
		made.push({ title: String(title), body: options && options.body, tag: options && options.tag,
			hidden: document.visibilityState !== 'visible' });
		this.close = function () {};
	}
	Notification.permission = 'default';
	Notification.requestPermission = function () {
		window.__parleyAsked = (window.__parleyAsked || 0) + 1;
		Notification.permission = 'granted';
		return Promise.resolve('granted');
	};
	Object.defineProperty(window, 'Notification', { configurable: true, writable: true, value: Notification });
	window.__parleyNotifications = made;
})();`

// TestBrowserNotifications: after "Notify me of new messages" is clicked and allowed,
// a message arriving while the tab is hidden makes a desktop notification titled with
// the sender and carrying the message as plain text; none while the tab is visible,
// and none before the person asked.
func TestBrowserNotifications(t *testing.T) {
	chromium := testenv.Chromium(t)
	env := newPagesEnvAt(t, "")
	site := env.srv.URL
	chromiumCtx := startChromium(t, chromium)
	ann := newBrowser(t, chromiumCtx, "ann")
	bob := newBrowser(t, chromiumCtx, "bob")
	ann.do("stub notifications", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: notificationStub})
		return err
	}))

	ann.join(site, "bell", "ann@example.org")
	bob.join(site, "bell", "bob@example.org")
	for _, b := range []*browser{ann, bob} {
		b.waitFor("connected", `document.getElementById('status').dataset.state === 'connected' &&
			document.getElementById('peer').textContent.includes('@example.org')`)
	}
	const made = `window.__parleyNotifications.length`

	// Not asked yet: a hidden tab gets no notification.
	ann.waitFor("the notify button", `!document.getElementById('notify').hidden &&
		document.getElementById('notify').textContent === 'Notify me of new messages'`)
	ann.setHidden(true)
	bob.send("Before you asked.", true)
	ann.waitForMessage("Before you asked.")
	ann.setHidden(false)
	if n := evaluate[int](ann, made); n != 0 {
		t.Errorf("%d notifications before permission was asked", n)
	}

	// Asked and allowed: the button goes.
	ann.click("#notify")
	ann.waitFor("permission asked once, button gone", `window.__parleyAsked === 1 && document.getElementById('notify').hidden`)

	// Visible tab: the message is on screen, no notification.
	bob.send("You can see this one.", true)
	ann.waitForMessage("You can see this one.")
	if n := evaluate[int](ann, made); n != 0 {
		t.Errorf("%d notifications while the tab is visible, want none", n)
	}

	// Hidden tab: one notification per message, from Bob, with the text as text.
	ann.setHidden(true)
	bob.send(xssText, true)
	ann.waitForMessage(xssText)
	ann.waitFor("a notification", made+` === 1`)
	type note struct {
		Title  string `json:"title"`
		Body   string `json:"body"`
		Hidden bool   `json:"hidden"`
	}
	got := evaluate[note](ann, `window.__parleyNotifications[0]`)
	if got.Title != "bob@example.org" || got.Body != xssText || !got.Hidden {
		t.Errorf("notification %+v, want title bob@example.org, body %q exactly, made while hidden", got, xssText)
	}
	if n := evaluate[int](ann, `document.querySelectorAll('#messages img, #messages script').length`); n != 0 {
		t.Errorf("the message became %d elements", n)
	}
	bob.send("And a second.", true)
	ann.waitFor("a second notification", made+` === 2 && window.__parleyNotifications[1].body === 'And a second.'`)

	// Back to the tab: no more notifications.
	ann.setHidden(false)
	bob.send("Welcome back.", true)
	ann.waitForMessage("Welcome back.")
	if n := evaluate[int](ann, made); n != 2 {
		t.Errorf("%d notifications after the tab was visible again, want still 2", n)
	}
	ann.checkClean()
	bob.checkClean()
}
