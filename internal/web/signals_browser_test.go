package web

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"

	"parley/internal/testenv"
)

// setHidden makes b's page believe its tab is hidden (or visible again), as switching
// tabs or minimising the window does, and tells the page so.
func (b *browser) setHidden(hidden bool) {
	b.t.Helper()
	if !evaluate[bool](b, fmt.Sprintf(`(function (h) {
		Object.defineProperty(document, 'visibilityState', { configurable: true, get: function () { return h ? 'hidden' : 'visible'; } });
		Object.defineProperty(document, 'hidden', { configurable: true, get: function () { return h; } });
		document.dispatchEvent(new Event('visibilitychange'));
		return true;
	})(%t)`, hidden)) {
		b.t.Fatalf("%s: could not set the tab's visibility", b.name)
	}
}

// ownState is the data-state of b's own message with exactly text.
func ownState(text string) string {
	return fmt.Sprintf(`(Array.from(document.querySelectorAll('#messages li.mine')).find(function (li) {
		return li.querySelector('.text').textContent === %s; }) || { dataset: {} }).dataset.state`, jsString(text))
}

// TestBrowserLiveSignals: two people in headless Chromium, one of them on a 390×844
// phone screen. Typing shows at the other person and goes away, at the latest when
// their message arrives; ✓✓ is highlighted
// only once the reader's tab is visible; a hidden tab counts unread messages in its
// title; joined and left notices and a day separator are in the timeline; the ended
// room is read-only after a reload.
func TestBrowserLiveSignals(t *testing.T) {
	chromium := testenv.Chromium(t)
	env := newPagesEnvAt(t, "")
	site := env.srv.URL
	chromiumCtx := startChromium(t, chromium)
	ann := newBrowser(t, chromiumCtx, "ann")
	bob := newBrowser(t, chromiumCtx, "bob")
	bob.do("phone screen", chromedp.EmulateViewport(390, 844))

	ann.join(site, "signals", "ann@example.org")
	ann.waitFor("Ann connected", `document.getElementById('status').dataset.state === 'connected'`)
	bob.join(site, "signals", "bob@example.org")
	bob.waitFor("Bob connected", `document.getElementById('status').dataset.state === 'connected'`)
	ann.waitFor("the joined notice", `Array.from(document.querySelectorAll('#messages li.notice')).some(function (li) {
		return li.textContent === 'bob@example.org joined'; })`)

	// Typing: shown at the other person, gone a few seconds after the last signal.
	ann.do("type", chromedp.Focus(chromedp.ID("text")), insertText("Hel"))
	bob.waitFor("the typing indicator", `!document.getElementById('typing').hidden &&
		document.getElementById('typing').textContent === 'ann@example.org is typing…'`)
	if evaluate[bool](ann, `!document.getElementById('typing').hidden`) {
		t.Error("ann sees her own typing")
	}
	bob.waitFor("the typing indicator to go", `document.getElementById('typing').hidden`)
	ann.do("clear", chromedp.Evaluate[chromedp.Void](`(function (t) { t.value = ''; t.dispatchEvent(new Event('input')); })(document.getElementById('text'))`))

	// Typing again, then the message: it ends the indicator at once (the 4 s timer
	// would keep it for seconds after the message is on screen).
	ann.do("type", chromedp.Focus(chromedp.ID("text")), insertText("Are you"))
	bob.waitFor("the typing indicator again", `!document.getElementById('typing').hidden`)
	ann.send(" there?", true)
	bob.waitForMessage("Are you there?")
	if evaluate[bool](bob, `!document.getElementById('typing').hidden`) {
		t.Error("bob still sees ann typing once her message is shown")
	}

	// Read on screen while visible: ✓✓ highlighted.
	ann.waitFor("✓✓ read", ownState("Are you there?")+` === 'read'`)
	bob.waitFor("a day separator", `document.querySelector('#messages li.day') !== null &&
		document.querySelector('#messages li.day').textContent === 'Today'`)

	// Bob's tab hidden: delivered, not read, and counted in his title.
	bob.setHidden(true)
	ann.send("Lunch at one?", true)
	ann.send("Or two?", true)
	bob.waitFor("two unread in the title", `document.title.indexOf('(2) ') === 0`)
	ann.waitFor("✓✓ delivered", ownState("Or two?")+` === 'delivered'`)
	if got := evaluate[string](ann, ownState("Lunch at one?")); got != "delivered" {
		t.Errorf("a message to a hidden tab is %q, want delivered (not read)", got)
	}
	if got := evaluate[string](ann, `document.querySelector('#messages li.mine[data-state="delivered"] .tick').textContent`); got != "✓✓" {
		t.Errorf("delivered tick %q, want ✓✓", got)
	}

	// Back to the tab: read, highlighted at Ann, and the title is clean again.
	bob.setHidden(false)
	ann.waitFor("✓✓ read after Bob looks", ownState("Or two?")+` === 'read' && `+ownState("Lunch at one?")+` === 'read'`)
	bob.waitFor("no unread in the title", `document.title.indexOf('(') !== 0`)

	// Bob leaves (his tab closes): Ann sees it. Then Ann ends the chat.
	bob.do("leave", chromedp.Navigate("about:blank"))
	ann.waitFor("the left notice", `Array.from(document.querySelectorAll('#messages li.notice')).some(function (li) {
		return li.textContent === 'bob@example.org left'; })`)
	ann.click("#end")
	ann.waitFor("ended", `document.getElementById('status').dataset.state === 'ended'`)

	// Reopening the room shows the ended chat, read-only, with a way to start anew.
	bob.do("reopen", chromedp.Navigate(site+"/rooms/signals"))
	bob.waitFor("the ended chat, read-only", `document.querySelectorAll('#messages .msg').length === 3 &&
		(document.getElementById('text') === null || document.getElementById('text').disabled) &&
		document.getElementById('new-chat') !== null`)
	if w := evaluate[int](bob, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the room page is %d px wide on a 390 px screen", w)
	}
	ann.checkClean()
	bob.checkClean()
}
