package web

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"

	"parley/internal/testenv"
)

// TestBrowserSignInByEmailLink drives real headless Chromium through sign-in by
// emailed link, the default: each person types room and email, sees "check your
// email", opens the link from the email (read from the outbox), presses Sign in and
// lands in the room, connected; the two then chat. Someone else opening a used link
// gets no seat. No page of the two may throw, log an error or break the CSP.
func TestBrowserSignInByEmailLink(t *testing.T) {
	chromium := testenv.Chromium(t)
	e := newSecEnv(t, Config{})
	chromiumCtx := startChromium(t, chromium)
	ann := newBrowser(t, chromiumCtx, "ann")
	bob := newBrowser(t, chromiumCtx, "bob")

	annLink := e.browserSignIn(ann, "link-room", "ann@example.org")
	ann.waitFor("Ann connected", `document.getElementById('status').dataset.state === 'connected'`)
	ann.waitFor("Ann is host", `document.getElementById('my-role').textContent === 'host'`)
	e.browserSignIn(bob, "link-room", "bob@example.org")
	bob.waitFor("Bob connected", `document.getElementById('status').dataset.state === 'connected'`)
	bob.waitFor("Bob is participant", `document.getElementById('my-role').textContent === 'participant'`)

	ann.send("Hello Bob, signed in by link", true)
	bob.waitForMessage("Hello Bob, signed in by link")
	bob.send("Hello Ann", false)
	ann.waitForMessage("Hello Ann")

	// Ann's link was used: opened again, in another browser, it signs nobody in.
	eve := newBrowser(t, chromiumCtx, "eve")
	eve.do("open a used link", chromedp.Navigate(annLink), chromedp.WaitVisible(chromedp.ID("signin")))
	eve.click("#signin")
	eve.waitFor("the refusal", `document.body.textContent.includes('expired or was already used') &&
		document.getElementById('new-link') !== null`)
	eve.do("go to the room", chromedp.Navigate(e.ts.URL+"/rooms/link-room"))
	eve.waitFor("the sign-in page that returns to the room", `location.pathname === '/signin' &&
		document.querySelector('input[name="next"]').value === '/rooms/link-room' &&
		document.getElementById('signin-title').textContent.includes('open the room link-room')`)

	ann.checkClean()
	bob.checkClean()
}

// browserSignIn signs b in through the join form and the emailed link, and returns
// the link.
func (e *secEnv) browserSignIn(b *browser, room, email string) string {
	b.t.Helper()
	b.do("join",
		chromedp.Navigate(e.ts.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("room")),
		chromedp.Focus(chromedp.ID("room")), insertText(room),
		chromedp.Focus(chromedp.ID("email")), insertText(email),
		chromedp.Click(chromedp.CSS(`form[action="/join"] button[type="submit"]`)),
	)
	b.waitFor("check your email", `document.title.indexOf('Check your email') === 0`)
	link := e.cfg.PublicURL + "/signin/" + e.lastLink(email)
	b.do("open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("signin")))
	b.click("#signin")
	b.waitFor("the room page", fmt.Sprintf(`location.pathname === %q`, "/rooms/"+room))
	return link
}
