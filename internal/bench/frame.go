package bench

import "parley/internal/wire"

// frame is the part of a server frame the bench looks at (wire.View): byte slices into
// the frame's data, valid as long as it is, so a delivery costs the bench no copy.
type frame struct{ wire.View }

// jsonFrame is frame's fields as strings.
type jsonFrame = wire.ViewJSON

// decodeFrame reads one server frame into f without reflection or copies.
func decodeFrame(data []byte, f *frame) error { return wire.DecodeView(data, &f.View) }

// strings returns f's fields as strings.
func (f *frame) strings() jsonFrame { return f.Strings() }
