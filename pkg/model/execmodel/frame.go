package execmodel

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/warren-farm/warren/pkg/model"
)

// errProtocol marks a child that broke the protocol: a frame too long, not JSON,
// of an unexpected type or sequence number. The child is killed and restarted.
var errProtocol = errors.New("protocol error")

// writeFrame writes one frame: the body's length, 4 bytes big-endian, then body.
func writeFrame(w io.Writer, body []byte) error {
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	_, err := w.Write(buf)
	return err
}

// readFrame reads one frame of at most max bytes. A longer announced length is
// an errProtocol before anything is allocated.
func readFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: a frame of %d bytes announced, more than the limit of %d (header bytes % x: stdout noise on fd 4?)", errProtocol, n, max, hdr)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// loadFrame is the worker's first frame to a child.
type loadFrame struct {
	Type     string `json:"type"` // "load"
	ModelDir string `json:"model_dir"`
	Name     string `json:"name"`
	Version  string `json:"version"`
	Instance int    `json:"instance"`
}

// childFrame is any frame a child sends; Type says which members count.
type childFrame struct {
	Type string `json:"type"` // ready, load_error, result, error
	// ready
	Platform     string             `json:"platform"`
	MaxBatchSize int                `json:"max_batch_size"`
	Inputs       []model.TensorSpec `json:"inputs"`
	Outputs      []model.TensorSpec `json:"outputs"`
	// result, error
	Seq     uint64            `json:"seq"`
	Results []json.RawMessage `json:"results"`
	// load_error, error
	Error string `json:"error"`
}

// result is one item of a result frame; the item's raw JSON also holds its
// "outputs", decoded with package oip.
type result struct {
	ID     string `json:"id"`
	Status string `json:"status"` // ok, bad_input, error, unavailable
	Error  string `json:"error"`
}

// The result statuses.
const (
	statusOK          = "ok"
	statusBadInput    = "bad_input"
	statusError       = "error"
	statusUnavailable = "unavailable"
)

func decodeChildFrame(body []byte) (*childFrame, error) {
	var f childFrame
	if err := json.Unmarshal(body, &f); err != nil {
		return nil, fmt.Errorf("%w: a frame that is not a JSON object (%v): %s", errProtocol, err, snippet(body))
	}
	return &f, nil
}

// snippet quotes at most 120 bytes of b for an error.
func snippet(b []byte) string {
	const n = 120
	if len(b) > n {
		return fmt.Sprintf("%q…", b[:n])
	}
	return fmt.Sprintf("%q", b)
}
