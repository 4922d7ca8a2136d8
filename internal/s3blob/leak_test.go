package s3blob

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's run if a test leaves a goroutine running. The AWS
// SDK's HTTP client keeps idle keep-alive connections, each with a read and a write
// goroutine, until the server closes them; it offers no way to close them (it hands
// out only copies of its transport), so exactly those two are not counted.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))
}
