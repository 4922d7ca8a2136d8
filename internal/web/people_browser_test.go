package web

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"parley/internal/chat"
	"parley/internal/fileblob"
	"parley/internal/testenv"
)

// Phone viewport of the people tests.
const (
	phoneWidth          = 390
	phoneHeight         = 844
	phoneScreenshotPath = "../../docs/screenshot-room-phone.png"
)

// colourEmojiPixels draws 😀 in black with the message text's font on a canvas and
// counts the pixels that came out coloured: none when a black-and-white glyph wins.
const colourEmojiPixels = `(function () {
	var font = '32px ' + getComputedStyle(document.querySelector('#messages .text')).fontFamily;
	return document.fonts.load(font, '😀').then(function () {
		var c = document.createElement('canvas'); c.width = c.height = 48;
		var g = c.getContext('2d'); g.font = font; g.textBaseline = 'top'; g.fillStyle = '#000';
		g.fillText('😀', 0, 0);
		var d = g.getImageData(0, 0, 48, 48).data, n = 0;
		for (var i = 0; i < d.length; i += 4) {
			if (d[i + 3] > 128 && Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 60) { n++; }
		}
		return n;
	});
})()`

// newPhone is a browser with a 390×844 viewport whose clock is in zone.
func newPhone(t *testing.T, chromiumCtx context.Context, name, zone string) *browser {
	t.Helper()
	b := newBrowser(t, chromiumCtx, name)
	b.do("phone viewport", chromedp.EmulateViewport(phoneWidth, phoneHeight),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: zone})
			return err
		}))
	return b
}

// TestBrowserRoomDetails drives two people on phones through what the room page
// keeps for them: a draft survives a reload, links are clickable and safe, emoji
// have a colour font, a stale warning clears, the reconnect countdown ticks with
// "Retry now" while the other person shows "connection lost", an ended room reloads
// read-only with "Start a new chat", and history shows times in the zone the browser
// reported at sign-in.
func TestBrowserRoomDetails(t *testing.T) {
	chromium := testenv.Chromium(t)
	proxy := newCutProxy(t)
	env := newPagesEnvAt(t, proxy.url())
	proxy.forwardTo(env.srv.Listener.Addr().String())
	site := proxy.url()
	chromiumCtx := startChromium(t, chromium)
	ann := newPhone(t, chromiumCtx, "ann", "Asia/Tokyo")
	bob := newPhone(t, chromiumCtx, "bob", "America/New_York")

	ann.join(site, "porch", "ann@example.org")
	bob.join(site, "porch", "bob@example.org")
	for _, b := range []*browser{ann, bob} {
		b.waitFor("connected", `document.getElementById('status').dataset.state === 'connected' &&
			document.getElementById('peer').textContent.includes('@example.org')`)
	}
	if zone, _ := env.store.TimeZone(context.Background(), "ann@example.org"); zone != "Asia/Tokyo" {
		t.Fatalf("zone stored at sign-in %q, want the browser's Asia/Tokyo", zone)
	}

	// A draft survives a reload, and goes once it is sent.
	ann.do("type a draft", chromedp.Focus(chromedp.ID("text")), insertText("half a thought 😀"))
	ann.do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("text")))
	ann.waitFor("the draft back", `document.getElementById('text').value === 'half a thought 😀'`)
	ann.do("send the draft", chromedp.Focus(chromedp.ID("text")), pressEnter(0))
	bob.waitForMessage("half a thought 😀")
	ann.do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("text")))
	ann.waitFor("connected again with no draft", `document.getElementById('status').dataset.state === 'connected' &&
		document.getElementById('text').value === ''`)

	// Links are links, markup is text, and emoji have a colour font to draw with.
	bob.send(`see https://example.org/a?b=1&c=2. <b>bold</b> <a href="javascript:alert(1)">x</a>`, true)
	ann.waitFor("the link", `(function () {
		var a = document.querySelector('#messages .text a[href="https://example.org/a?b=1&c=2"]');
		return a !== null && a.rel === 'noopener noreferrer' && a.target === '_blank' && a.textContent === 'https://example.org/a?b=1&c=2';
	})()`)
	if n := evaluate[int](ann, `document.querySelectorAll('#messages b, #messages a[href^="javascript"]').length`); n != 0 {
		t.Errorf("message markup became %d elements", n)
	}
	if font := evaluate[string](ann, `getComputedStyle(document.querySelector('#messages .text')).fontFamily`); !strings.Contains(font, "Noto Color Emoji") {
		t.Errorf("message font %q has no colour emoji font", font)
	}
	if n := evaluatePromise[int](ann, colourEmojiPixels); n < 50 {
		t.Errorf("😀 in the message font drew %d coloured pixels, want a colour emoji (is fonts-noto-color-emoji installed?)", n)
	}

	// The too-long warning goes once the draft is short enough again.
	ann.do("type too much", chromedp.Focus(chromedp.ID("text")), insertText(strings.Repeat("x", 4001)), pressEnter(0))
	ann.waitFor("the warning", `!document.getElementById('banner').hidden && document.getElementById('banner').textContent.includes('too long')`)
	ann.do("shorten", chromedp.Focus(chromedp.ID("text")), chromedp.KeyEvent("\b"))
	ann.waitFor("the warning gone", `document.getElementById('banner').hidden`)
	ann.do("clear", chromedp.Evaluate[chromedp.Void](`(function (t) { t.value = ''; t.dispatchEvent(new Event('input')); })(document.getElementById('text'))`))

	// Offline: the countdown ticks, the other person shows "connection lost", and
	// "Retry now" reconnects at once when the network is back.
	proxy.cut()
	ann.waitFor("a countdown of a few seconds", `/reconnecting in [2-9] s/.test(document.getElementById('status-text').textContent)`)
	first := evaluate[string](ann, `document.getElementById('status-text').textContent`)
	ann.waitFor("the countdown to tick", `(function (t) { return /reconnecting in \d+ s/.test(t) && t !== `+jsString(first)+`; })(document.getElementById('status-text').textContent)`)
	ann.waitFor("the peer shown as connection lost", `document.getElementById('peer-state').textContent === 'connection lost' &&
		!document.getElementById('peer-state').hidden && document.getElementById('peer-presence').dataset.online !== 'true'`)
	proxy.restore()
	// Retry now, unless the countdown ran out between the check above and here and the
	// page reconnected by itself (a chromedp click would wait for a button now hidden).
	evaluate[bool](ann, `(function (b) { if (b && !b.hidden && b.offsetParent !== null) { b.click(); return true; } return false; })(document.getElementById('retry'))`)
	ann.waitFor("reconnected", `document.getElementById('status').dataset.state === 'connected' &&
		document.getElementById('peer-state').hidden`)
	bob.waitFor("reconnected", `document.getElementById('status').dataset.state === 'connected'`)
	ann.saveScreenshotTo(phoneScreenshotPath)

	// The end: read-only after a reload, with a new chat and history offered; the
	// reload starts nothing.
	ann.click("#end")
	bob.waitFor("the end", `document.getElementById('status').dataset.state === 'ended'`)
	bob.do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("new-chat")))
	bob.waitFor("the ended chat, read-only", `document.getElementById('room').dataset.state === 'ended' &&
		document.getElementById('text') === null && document.getElementById('ended-notice').textContent === 'ann@example.org ended this chat.' &&
		document.querySelectorAll('#messages .msg').length === 2 && document.getElementById('history') !== null &&
		document.getElementById('new-chat').textContent === 'Start a new chat in this room'`)
	if _, err := env.store.InProgress(context.Background(), "porch"); !chat.IsCode(err, chat.ENotFound) {
		t.Fatalf("reloading the ended room started a chat (%v)", err)
	}
	bob.click("#new-chat")
	bob.waitFor("a new chat", `document.getElementById('status').dataset.state === 'connected' && document.getElementById('my-role').textContent === 'host'`)

	// History in Tokyo time, said so.
	ann.do("history", chromedp.Navigate(site+"/history"), chromedp.WaitVisible(chromedp.ID("zone-note")))
	ann.waitFor("times in Tokyo", `document.getElementById('zone-note').textContent.includes('Asia/Tokyo') &&
		document.querySelector('table.history time').textContent.includes('JST')`)
	for _, b := range []*browser{ann, bob} {
		b.checkClean()
	}
}

// TestBrowserSignedOutTranscriptLink: the transcript link from the email, opened in a
// browser that is not signed in, leads to the sign-in page; after the emailed link,
// the browser is back at the transcript and the CSV is theirs.
func TestBrowserSignedOutTranscriptLink(t *testing.T) {
	chromium := testenv.Chromium(t)
	e := newSecEnv(t, Config{})
	ctx := context.Background()
	arch, err := fileblob.Open(filepath.Join(t.TempDir(), "archive"))
	if err != nil {
		t.Fatal(err)
	}
	e.srv.archive = arch
	sess, _, err := e.store.Enter(ctx, "deal", "ann@example.org", chat.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Enter(ctx, "deal", "bob@example.org", chat.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Append(ctx, chat.Message{SessionID: sess.ID, ClientID: "c1", From: "ann@example.org",
		Room: "deal", Kind: chat.KindChat, Text: "Grüße — the deal 🤝"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.End(ctx, sess.ID, "ann@example.org", chat.Now()); err != nil {
		t.Fatal(err)
	}
	exportNow(t, e.store, arch, sess.ID)

	bob := newPhone(t, startChromium(t, chromium), "bob", "Europe/Berlin")
	path := "/transcripts/" + sess.ID
	bob.do("open the transcript link", chromedp.Navigate(e.ts.URL+path), chromedp.WaitVisible(chromedp.ID("send-link")))
	bob.waitFor("the sign-in page", `location.pathname === '/signin' && document.getElementById('signin-title').textContent === 'Sign in to download the transcript'`)
	bob.do("ask for a link", chromedp.Focus(chromedp.ID("email")), insertText("bob@example.org"), chromedp.Click(chromedp.ID("send-link")))
	bob.waitFor("check your email", `document.title.indexOf('Check your email') === 0`)
	token := e.lastLink("bob@example.org")
	bob.do("open the emailed link", chromedp.Navigate(e.ts.URL+"/signin/"+token+"?next="+strings.ReplaceAll(path, "/", "%2F")),
		chromedp.WaitVisible(chromedp.ID("signin")))
	// Pressing Sign in answers 303 to the transcript, which the browser downloads;
	// the form is posted by fetch here so the test can see where it leads.
	got := evaluatePromise[string](bob, `(function () {
		var f = document.querySelector('form[action="/signin"]');
		return fetch('/signin', { method: 'POST', body: new URLSearchParams(new FormData(f)), credentials: 'same-origin' })
			.then(function (r) { return new URL(r.url).pathname + '|' + r.headers.get('Content-Type') + '|' + r.status; });
	})()`)
	if got != path+"|text/csv; charset=utf-8|200" {
		t.Fatalf("after signing in: %q, want the CSV at %s", got, path)
	}
	// text() drops a byte order mark, so the first bytes are read as numbers.
	csv := evaluatePromise[string](bob, `fetch(`+jsString(path)+`).then(function (r) { return r.arrayBuffer(); }).then(function (b) {
		return Array.from(new Uint8Array(b.slice(0, 3))).join(' ') + '|' + new TextDecoder('utf-8', { ignoreBOM: true }).decode(b);
	})`)
	if !strings.HasPrefix(csv, "239 187 191|\uFEFFseq,") || !strings.Contains(csv, "Grüße — the deal 🤝") || !strings.Contains(csv, ",bob@example.org,deal,chat,") {
		t.Fatalf("transcript as downloaded:\n%q", csv)
	}
	bob.checkClean()
}

// saveScreenshotTo captures the page into path when PARLEY_UPDATE_SCREENSHOT=1, else
// into the test's temporary folder.
func (b *browser) saveScreenshotTo(path string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("%s: screenshot: %v", b.name, err)
	}
	if os.Getenv(envUpdateShot) != "1" {
		path = filepath.Join(b.t.TempDir(), filepath.Base(path))
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("%s: screenshot %s", b.name, path)
}

// evaluatePromise evaluates expr, a promise, and returns what it resolves to.
func evaluatePromise[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: evaluate %s: %v", b.name, expr, err)
	}
	return v
}
