package web

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"parley/internal/testenv"
)

// Browser test settings. The screenshot in docs/ is rewritten only when asked, so
// `make test` leaves the repository clean.
const (
	browserTimeout   = 60 * time.Second
	browserWait      = 15 * time.Second
	envUpdateShot    = "PARLEY_UPDATE_SCREENSHOT"
	screenshotPath   = "../../docs/screenshot-room.png"
	screenshotWidth  = 1000
	screenshotHeight = 720
)

// xssText is a message that would run script if the page ever put message text into
// HTML instead of text.
const xssText = `<img src=x onerror=alert(1)>`

// TestBrowserTwoPeopleChat drives real headless Chromium: two people, each in their
// own browser context (separate cookies), join one room through the home page's form,
// exchange messages and see each other's, with markup shown as plain text. A third
// person is turned away; a network outage loses and duplicates nothing; a bye and End
// chat reach both, and so does the transcript link. No page may throw, log an error or
// break the CSP on the way.
func TestBrowserTwoPeopleChat(t *testing.T) {
	chromium := testenv.Chromium(t)
	proxy := newCutProxy(t)
	env := newPagesEnvAt(t, proxy.url())
	proxy.forwardTo(env.srv.Listener.Addr().String())
	site := proxy.url()
	chromiumCtx := startChromium(t, chromium)
	ann := newBrowser(t, chromiumCtx, "ann")
	bob := newBrowser(t, chromiumCtx, "bob")

	ann.join(site, "lobby-7", "ann@example.org")
	ann.waitFor("Ann connected", `document.getElementById('status').dataset.state === 'connected'`)
	ann.waitFor("Ann is host", `document.getElementById('my-role').textContent === 'host'`)
	bob.join(site, "lobby-7", "bob@example.org")
	bob.waitFor("Bob connected", `document.getElementById('status').dataset.state === 'connected'`)
	bob.waitFor("Bob is participant", `document.getElementById('my-role').textContent === 'participant'`)
	ann.waitFor("Ann sees Bob online", `document.getElementById('peer').textContent === 'bob@example.org' &&
		document.getElementById('peer-presence').dataset.online === 'true'`)
	bob.waitFor("Bob sees Ann", `document.getElementById('peer').textContent === 'ann@example.org'`)

	ann.send("Hi Bob! Ready to go over the plan?\nTwo lines, even.", true)
	bob.waitForMessage("Hi Bob! Ready to go over the plan?\nTwo lines, even.")
	bob.send("Hello Ann — yes, I have the notes here 📝", false)
	ann.waitForMessage("Hello Ann — yes, I have the notes here 📝")
	bob.send(xssText, true)
	ann.waitForMessage(xssText)
	ann.send("Great, let's start with the timeline.", true)
	bob.waitForMessage("Great, let's start with the timeline.")

	for _, b := range []*browser{ann, bob} {
		b.waitFor("every message acknowledged", `document.querySelectorAll('#messages li.msg:is([data-state="sent"],[data-state="delivered"],[data-state="read"])').length === 4`)
		if n := evaluate[int](b, `document.querySelectorAll('#messages img, #messages script').length`); n != 0 {
			t.Errorf("%s: message text became %d elements", b.name, n)
		}
		mine := evaluate[int](b, `document.querySelectorAll('#messages li.mine').length`)
		if mine != 2 {
			t.Errorf("%s: %d own messages, want 2", b.name, mine)
		}
	}
	ann.saveScreenshot()

	// Over the limit: the page says so and sends nothing.
	ann.do("type too much", chromedp.Focus(chromedp.ID("text")), insertText(strings.Repeat("é", 4001)), pressEnter(0))
	ann.waitFor("the too-long warning", `document.getElementById('banner').textContent.includes('at most 4000 characters') &&
		document.getElementById('count').textContent === '4001 / 4000' && document.getElementById('text').value.length === 4001`)
	ann.do("clear the box", chromedp.Evaluate[chromedp.Void](`(function (t) { t.value = ''; t.dispatchEvent(new Event('input')); })(document.getElementById('text'))`))

	// A third person is told the room is taken on the join form itself, with what
	// they typed kept.
	carol := newBrowser(t, chromiumCtx, "carol")
	carol.do("join a full room",
		chromedp.Navigate(site+"/"),
		chromedp.WaitVisible(chromedp.ID("room")),
		chromedp.Focus(chromedp.ID("room")), insertText("lobby-7"),
		chromedp.Focus(chromedp.ID("email")), insertText("carol@example.org"),
		chromedp.Click(chromedp.CSS(`form[action="/join"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("join-error")),
	)
	carol.waitFor("room full", `document.getElementById('join-error').textContent.includes('already has two people') &&
		document.getElementById('room').value === 'lobby-7' && document.getElementById('email').value === 'carol@example.org'`)

	// The network drops: a message typed meanwhile waits, then arrives once.
	proxy.cut()
	ann.waitFor("Ann to notice", `document.getElementById('status').dataset.state === 'reconnecting'`)
	ann.send("Sent while offline.", true)
	ann.waitFor("the message to wait", `document.querySelector('#messages li[data-state="pending"]') !== null`)
	proxy.restore()
	bob.waitForMessage("Sent while offline.")
	for _, b := range []*browser{ann, bob} {
		b.waitFor("reconnected", `document.getElementById('status').dataset.state === 'connected' &&
			document.querySelectorAll('#messages li.msg:is([data-state="sent"],[data-state="delivered"],[data-state="read"])').length === 5`)
		if n := evaluate[int](b, `document.querySelectorAll('#messages .msg').length`); n != 5 {
			t.Errorf("%s: %d messages after reconnecting, want 5", b.name, n)
		}
	}

	// Say bye sends the standard message and leaves: Ann sees Bob leave; Bob may
	// come back.
	bob.click("#bye")
	ann.waitForMessage("Bye! I am leaving the chat now.")
	ann.waitFor("Bob to leave", `Array.from(document.querySelectorAll('#messages .notice')).some(function (n) {
		return n.textContent === 'bob@example.org left';
	}) && document.getElementById('peer-presence').dataset.online === 'false'`)
	bob.waitFor("Bob out of the chat", `document.getElementById('status').dataset.state === 'left' &&
		document.getElementById('text').disabled && document.getElementById('come-back') !== null`)
	bob.click("#come-back")
	bob.waitFor("Bob back", `document.getElementById('status').dataset.state === 'connected' && !document.getElementById('text').disabled`)
	ann.waitFor("Bob online again", `document.getElementById('peer-presence').dataset.online === 'true'`)

	ann.click("#end") // opens a confirm dialog, which answerDialogs accepts
	ann.waitFor("the end notice in view", `(function () {
		var n = Array.from(document.querySelectorAll('#messages .notice')).filter(function (n) { return n.textContent === 'Chat ended by you.'; })[0];
		if (!n) { return false; }
		var r = n.getBoundingClientRect(), box = document.querySelector('.conversation').getBoundingClientRect();
		return r.top >= box.top && r.bottom <= box.bottom + 1;
	})()`)
	for _, b := range []*browser{ann, bob} {
		b.waitFor("the other person not shown online after the end", `document.getElementById('peer-presence').dataset.online !== 'true'`)
	}
	for _, b := range []*browser{ann, bob} {
		b.waitFor("chat ended", `document.getElementById('status').dataset.state === 'ended' &&
			document.getElementById('text').disabled`)
		b.waitFor("the ended notice", `Array.from(document.querySelectorAll('#messages .notice')).some(function (n) {
			return n.textContent.startsWith('Chat ended by ');
		})`)
		b.waitFor("the transcript link", `(document.querySelector('#status-text a') || {}).pathname === '/transcripts/' +
			document.getElementById('room').dataset.session`)
	}
	for _, b := range []*browser{ann, bob} {
		b.checkClean() // carol's page was a 409, which the browser logs
	}
}

// cutProxy is a TCP proxy between the browsers and Parley that can drop every
// connection and refuse new ones, as a network outage does.
type cutProxy struct {
	t      *testing.T
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

// newCutProxy listens on a local port; forwardTo starts forwarding.
func newCutProxy(t *testing.T) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln, conns: make(map[net.Conn]struct{})}
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	return p
}

func (p *cutProxy) url() string { return "http://" + p.ln.Addr().String() }

// forwardTo accepts connections and pipes each to target.
func (p *cutProxy) forwardTo(target string) {
	p.target = target
	go func() {
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

// pipe copies bytes both ways until either side closes or the proxy is cut.
func (p *cutProxy) pipe(client net.Conn) {
	if !p.track(client) {
		refuse(client)
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(server) {
		_ = client.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(server, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, server); done <- struct{}{} }()
	<-done
	_ = client.Close()
	_ = server.Close()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// refuse resets a connection accepted while the proxy is down, as a refused
// connection looks to a browser (net::ERR_CONNECTION_RESET). Closed normally, it
// would look like a server that took the WebSocket handshake and closed without an
// answer ("Connection closed before receiving a handshake response"), which record
// counts as a problem: the page had reconnected during the outage by chance.
func refuse(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// track records c unless the proxy is down.
func (p *cutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// cut drops every open connection and refuses new ones until restore.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// browser is one person's headless Chromium with its own profile.
type browser struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu       sync.Mutex
	problems []string // exceptions, console errors, CSP violations
	dialogs  chan struct{}
}

// startChromium starts one headless Chromium with a fresh profile; each person gets
// their own browser context in it (separate cookies and storage, like two machines).
func startChromium(t *testing.T, chromium string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(screenshotWidth, screenshotHeight),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser with no deadline
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// newBrowser opens a tab in a new browser context of the running Chromium and
// records every exception, error log entry and dialog of the tab.
func newBrowser(t *testing.T, chromiumCtx context.Context, name string) *browser {
	t.Helper()
	b := &browser{t: t, name: name, dialogs: make(chan struct{}, 4)}
	ctx, cancel := chromedp.NewContext(chromiumCtx, chromedp.WithNewBrowserContext(), chromedp.WithListener(b.record))
	t.Cleanup(cancel)
	b.ctx = ctx
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(screenshotWidth, screenshotHeight)); err != nil {
		t.Fatalf("%s: open a tab: %v", name, err)
	}
	go b.answerDialogs()
	return b
}

// record notes what must not happen on a page. It runs in chromedp's read loop, so it
// only appends and signals.
func (b *browser) record(ev any) {
	var problem string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		problem = "exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			problem += " " + ev.ExceptionDetails.Exception.Description
		}
	case *log.EventEntryAdded:
		// net::ERR_ failures come from the outage the test makes; anything else, such as
		// a refused handshake or a CSP violation, is a problem.
		if ev.Entry.Level == log.EntryLevelError && !strings.Contains(ev.Entry.Text, "net::ERR_") {
			problem = fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			problem = "console.error"
		}
	case *page.EventJavascriptDialogOpening:
		if ev.Type != page.DialogTypeConfirm {
			problem = "unexpected dialog: " + string(ev.Type) + " " + ev.Message
		}
		select {
		case b.dialogs <- struct{}{}:
		default:
		}
	}
	if problem != "" {
		b.mu.Lock()
		b.problems = append(b.problems, problem)
		b.mu.Unlock()
	}
}

// answerDialogs closes every dialog (accepting a confirm, so End chat goes ahead);
// a dialog left open would block the page and the test.
func (b *browser) answerDialogs() {
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.dialogs:
			_, _ = chromedp.Call(b.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}
}

// checkClean fails the test for anything record noted.
func (b *browser) checkClean() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("%s: %s", b.name, p)
	}
}

// do runs actions with the browser timeout.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %s: %v%s", b.name, what, err, b.problemsSoFar())
	}
}

func (b *browser) problemsSoFar() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) == 0 {
		return ""
	}
	return "\npage problems: " + strings.Join(b.problems, "; ")
}

// evaluate returns the value of a JavaScript expression on b's page.
func evaluate[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("%s: evaluate %s: %v", b.name, expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it holds or browserWait passes. (The CSP
// forbids eval, so chromedp's in-page Poll cannot run here; Runtime.evaluate can.)
func (b *browser) waitFor(what, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(browserWait)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](cond))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			status, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(document.getElementById('status-text')||{}).textContent || document.title`))
			b.t.Fatalf("%s: timed out waiting for %s (status %q, err %v)%s", b.name, what, status, err, b.problemsSoFar())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// join fills in the home page's join form and submits it.
func (b *browser) join(baseURL, room, email string) {
	b.t.Helper()
	b.do("join",
		chromedp.Navigate(baseURL+"/"),
		chromedp.WaitVisible(chromedp.ID("room")),
		chromedp.Focus(chromedp.ID("room")), insertText(room),
		chromedp.Focus(chromedp.ID("email")), insertText(email),
		chromedp.Click(chromedp.CSS(`form[action="/join"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("messages")),
	)
	b.waitFor("the room page", fmt.Sprintf(`location.pathname === %q`, "/rooms/"+room))
}

// send types text in the message box and sends it with Enter or the Send button.
// Newlines are typed with Shift+Enter, as a person would.
func (b *browser) send(text string, enter bool) {
	b.t.Helper()
	b.do("type", chromedp.Focus(chromedp.ID("text")))
	for i, line := range strings.Split(text, "\n") {
		if i > 0 {
			b.do("shift+enter", pressEnter(chromedp.ModifierShift))
		}
		b.do("type", insertText(line))
	}
	if enter {
		b.do("press enter", pressEnter(0))
	} else {
		b.click("#send")
	}
	b.waitFor("the box to empty", `document.getElementById('text').value === ''`)
}

// insertText types text into the focused field as a keyboard or input method does,
// firing the input events, in one protocol call rather than one per key.
func insertText(text string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: text})
		return err
	})
}

// pressEnter presses Enter as a keyboard does: one keyDown carrying the text, so a
// page that cancels the keydown also cancels the newline. (chromedp.KeyEvent sends a
// separate char event, which types a newline whatever the page does.)
func pressEnter(modifiers chromedp.Modifier) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		down := input.DispatchKeyEventParams{Type: input.DispatchKeyEventTypeKeyDown, Key: "Enter", Code: "Enter",
			WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13, Text: "\r", UnmodifiedText: "\r",
			Modifiers: int64(modifiers)}
		if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, down); err != nil {
			return err
		}
		up := down
		up.Type, up.Text, up.UnmodifiedText = input.DispatchKeyEventTypeKeyUp, "", ""
		_, err := cdp.Call(ctx, t, input.DispatchKeyEvent, up)
		return err
	})
}

func (b *browser) click(css string) {
	b.t.Helper()
	b.do("click "+css, chromedp.Click(chromedp.CSS(css)))
}

// waitForMessage waits until a message with exactly text is in the list, as text.
func (b *browser) waitForMessage(text string) {
	b.t.Helper()
	b.waitFor("message "+fmt.Sprintf("%q", text), fmt.Sprintf(
		`Array.from(document.querySelectorAll('#messages .text')).some(function (p) { return p.textContent === %s; })`,
		jsString(text)))
}

// saveScreenshot writes the room page to docs/screenshot-room.png when
// PARLEY_UPDATE_SCREENSHOT=1, and to the test's temporary folder otherwise.
func (b *browser) saveScreenshot() {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("%s: screenshot: %v", b.name, err)
	}
	path := filepath.Join(b.t.TempDir(), "screenshot-room.png")
	if os.Getenv(envUpdateShot) == "1" {
		path = screenshotPath
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("room page screenshot: %s", path)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\u2028", `\u2028`, "\u2029", `\u2029`)
	return `"` + r.Replace(s) + `"`
}
