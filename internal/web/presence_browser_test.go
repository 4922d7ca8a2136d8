package web

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"parley/internal/chat"
	"parley/internal/membus"
	"parley/internal/testenv"
)

// switchPresence is the in-process presence backend, made to stop answering (as Redis
// does when it is down) while down is set.
type switchPresence struct {
	*membus.Presence
	down atomic.Bool
}

var errPresenceDown = errors.New("presence backend down")

func (p *switchPresence) Connected(ctx context.Context, s, e string) (bool, error) {
	if p.down.Load() {
		return false, errPresenceDown
	}
	return p.Presence.Connected(ctx, s, e)
}

func (p *switchPresence) Disconnected(ctx context.Context, s, e string) (bool, error) {
	if p.down.Load() {
		return false, errPresenceDown
	}
	return p.Presence.Disconnected(ctx, s, e)
}

func (p *switchPresence) Online(ctx context.Context, s, e string) (bool, error) {
	if p.down.Load() {
		return false, errPresenceDown
	}
	return p.Presence.Online(ctx, s, e)
}

var _ chat.Presence = (*switchPresence)(nil)

// TestBrowserPresenceUnknown: while the presence backend does not answer, a page that
// (re)connects is told the other person's state is a guess; it shows "status unknown"
// instead of "offline", and the chat still works both ways. Once presence answers
// again, a reload shows the other person online.
func TestBrowserPresenceUnknown(t *testing.T) {
	chromium := testenv.Chromium(t)
	presence := &switchPresence{Presence: membus.NewPresence()}
	site := newTestSite(t, Config{Auth: AuthTrust}, func(d *Deps, site *testSite) {
		d.Presence = presence
	})
	chromiumCtx := startChromium(t, chromium)
	ann := newBrowser(t, chromiumCtx, "ann")
	bob := newBrowser(t, chromiumCtx, "bob")
	presenceText := `document.getElementById('peer-presence').textContent.trim()`

	ann.join(site.ts.URL, "unknown", "ann@example.org")
	bob.join(site.ts.URL, "unknown", "bob@example.org")
	bob.waitFor("ann online", presenceText+` === 'online'`)

	presence.down.Store(true)
	bob.do("reload", chromedp.Reload())
	bob.waitFor("Bob connected again", `document.getElementById('status').dataset.state === 'connected'`)
	bob.waitFor("ann's status unknown", presenceText+` === 'status unknown'`)
	bob.send("can you hear me?", true)
	ann.waitForMessage("can you hear me?")
	ann.send("yes", true)
	bob.waitForMessage("yes")

	presence.down.Store(false)
	bob.do("reload", chromedp.Reload())
	bob.waitFor("ann online again", presenceText+` === 'online'`)
	ann.checkClean()
	bob.checkClean()
}
