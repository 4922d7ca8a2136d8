package chat

// number is what SetDefault fills in: counts, sizes, rates and durations.
type number interface {
	~int | ~int64 | ~float64
}

// SetDefault sets *v to def when it is zero or negative, which is how Parley's option
// and config structs say "not set": NewServer, hub.New and room.New fill theirs in so.
func SetDefault[T number](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
