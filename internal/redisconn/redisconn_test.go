package redisconn

import "testing"

// TestSlot: the slots Redis itself gives (CLUSTER KEYSLOT on Redis 7.0), hash tags
// included; a chat's channel and presence keys share its id's slot.
func TestSlot(t *testing.T) {
	for key, want := range map[string]int{
		"foo":                  12182,
		"parley:{s1}:events":   15224,
		"{user1000}.following": 3443,
		"abc{}def":             15860, // an empty tag: the whole key counts
		"a{b}c{d}":             3300,  // only the first tag counts
		"":                     0,
	} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	if Slot("p:{abc}:events") != Slot("p:{abc}:presence:ann@example.org") {
		t.Error("a chat's channel and presence key are in different slots")
	}
}
