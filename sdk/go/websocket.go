package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/verge-edge/verge/internal/workerabi"
)

// MessageType is a WebSocket message's type.
type MessageType int

// Message types.
const (
	TextMessage   MessageType = workerabi.WSText
	BinaryMessage MessageType = workerabi.WSBinary
)

// Message is a WebSocket message received from a client.
type Message struct {
	Type MessageType
	Data []byte
}

// Text returns the message's data as a string.
func (m Message) Text() string { return string(m.Data) }

// CloseError is what Receive returns once the socket is closed: the client's close code and
// reason (1005 when it sent none), WasClean false when the connection ended without a
// closing handshake (code 1006) or the client broke the protocol (the code the host sent:
// 1002, 1007 or 1009).
type CloseError struct {
	Code     int
	Reason   string
	WasClean bool
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("websocket closed: %d %s", e.Code, e.Reason)
}

// WebSocket is an accepted WebSocket: accepted by a worker with AcceptWebSocket (it lives
// until the handler returns), or by a Durable Object with DurableObjectState.AcceptWebSocket
// (the host holds it; it outlives the object's instance).
type WebSocket struct {
	id   uint64
	tags []string
}

// ID identifies the socket; it is unique in the host process.
func (ws *WebSocket) ID() uint64 { return ws.id }

// Tags returns the tags given when a Durable Object accepted the socket (from
// GetWebSockets; nil otherwise).
func (ws *WebSocket) Tags() []string { return ws.tags }

// IsWebSocketUpgrade reports whether r asks to switch to the WebSocket protocol.
func IsWebSocketUpgrade(r *Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		if equalFold(v, "websocket") {
			return true
		}
	}
	return false
}

// AcceptWebSocket accepts the request's WebSocket in the worker: the host completes the
// opening handshake (101) at once, w is done with, and the socket lives until the handler
// returns (closed with 1000 then, unless closed before). Messages arrive with Receive, in
// order. While the handler waits in Receive, neither its CPU nor its wall time limit runs;
// each message starts both afresh. protocol optionally selects one subprotocol the client
// offered in Sec-WebSocket-Protocol. It fails (ErrInvalid) when r is not a WebSocket
// handshake on HTTP/1.1; answer such requests with 426 or 400 yourself.
//
// A socket accepted here holds the worker instance for its whole life; to hold many sockets
// cheaply, forward the request to a Durable Object that accepts it with hibernation.
func AcceptWebSocket(w ResponseWriter, r *Request, protocol ...string) (*WebSocket, error) {
	var e workerabi.Encoder
	p := ""
	if len(protocol) > 0 {
		p = protocol[0]
	}
	e.Str(p)
	res, err := rawCall(workerabi.OpWSAccept, e.B)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	ws := &WebSocket{id: uint64(d.I64())}
	if rw, ok := w.(*responseWriter); ok {
		rw.sent, rw.ended, rw.status = true, true, 101
	}
	return ws, d.Err
}

// Receive waits for the next message of a socket the worker accepted with AcceptWebSocket.
// Pings are answered by the host. Once the socket is closed it returns a *CloseError.
func (ws *WebSocket) Receive() (Message, error) {
	var e workerabi.Encoder
	e.I64(int64(ws.id))
	res, err := rawCall(workerabi.OpWSReceive, e.B)
	if err != nil {
		return Message{}, err
	}
	d := workerabi.Decoder{B: res}
	typ := d.U8()
	if typ == workerabi.WSClose {
		ce := &CloseError{Code: int(d.U32()), Reason: d.Str(), WasClean: d.U8() == 1}
		if d.Err != nil {
			return Message{}, d.Err
		}
		return Message{}, ce
	}
	m := Message{Type: MessageType(typ), Data: cloneBytes(&d)}
	return m, d.Err
}

// Send queues a message for the client (at most 1 MiB). The host writes it in the
// background; a client too slow to read 4 MiB of queued messages is disconnected (1008) and
// Send fails with ErrLimit.
func (ws *WebSocket) Send(typ MessageType, data []byte) error {
	var e workerabi.Encoder
	e.I64(int64(ws.id))
	e.U8(uint8(typ))
	e.Bytes(data)
	_, err := rawCall(workerabi.OpWSSend, e.B)
	return err
}

// SendText sends a text message.
func (ws *WebSocket) SendText(s string) error {
	var e workerabi.Encoder
	e.I64(int64(ws.id))
	e.U8(workerabi.WSText)
	e.Str(s)
	_, err := rawCall(workerabi.OpWSSend, e.B)
	return err
}

// Close starts the closing handshake with code (1000 or 3000..4999) and a reason of at most
// 123 bytes. Nothing can be sent afterwards. A Durable Object gets no WebSocketClose for a
// socket it closed itself.
func (ws *WebSocket) Close(code int, reason string) error {
	var e workerabi.Encoder
	e.I64(int64(ws.id))
	e.U32(uint32(code))
	e.Str(reason)
	_, err := rawCall(workerabi.OpWSClose, e.B)
	return err
}

// SerializeAttachment keeps v, encoded as JSON (at most 2 KiB), with a socket a Durable
// Object accepted: it survives the object's eviction, for DeserializeAttachment. A nil v
// removes it.
func (ws *WebSocket) SerializeAttachment(v any) error {
	var data []byte
	if v != nil {
		var err error
		if data, err = json.Marshal(v); err != nil {
			return err
		}
	}
	var e workerabi.Encoder
	e.I64(int64(ws.id))
	e.Bytes(data)
	_, err := rawCall(workerabi.OpWSAttachSet, e.B)
	return err
}

// DeserializeAttachment decodes the socket's attachment into v; ok is false when it has
// none.
func (ws *WebSocket) DeserializeAttachment(v any) (ok bool, err error) {
	var e workerabi.Encoder
	e.I64(int64(ws.id))
	res, err := rawCall(workerabi.OpWSAttachGet, e.B)
	if err != nil {
		return false, err
	}
	d := workerabi.Decoder{B: res}
	has := d.U8() == 1
	data := d.Raw()
	if d.Err != nil || !has {
		return false, d.Err
	}
	return true, json.Unmarshal(data, v)
}

// AcceptWebSocket accepts, for the object, the WebSocket of a request the worker forwarded
// unchanged from its client with the object's Fetch, and answers w with 101. The host holds
// the socket from then on (hibernation): the object may be evicted while the socket stays
// open, and each message the client sends runs the class's WebSocketMessage (the object is
// re-activated when needed), in order per socket. tags (up to 10, 1..256 bytes each) select
// sockets in GetWebSockets. The worker must answer its client with the object's response
// (WriteResponse), which switches the connection.
//
// The client must be connected to this node: a Durable Object on another cluster node
// cannot accept it (ErrInvalid).
func (s *DurableObjectState) AcceptWebSocket(w ResponseWriter, r *Request, tags ...string) (*WebSocket, error) {
	var e workerabi.Encoder
	e.Str("")
	e.U32(uint32(len(tags)))
	for _, t := range tags {
		e.Str(t)
	}
	res, err := rawCall(workerabi.OpWSAcceptObject, e.B)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	ws := &WebSocket{id: uint64(d.I64()), tags: tags}
	if d.Err != nil {
		return nil, d.Err
	}
	w.WriteHeader(101)
	return ws, nil
}

// GetWebSockets returns the object's open sockets with tag ("" for all), in the order they
// were accepted.
func (s *DurableObjectState) GetWebSockets(tag string) ([]*WebSocket, error) {
	var e workerabi.Encoder
	e.Str(tag)
	res, err := rawCall(workerabi.OpWSList, e.B)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	n := d.Count(12)
	out := make([]*WebSocket, 0, n)
	for i := 0; i < n && d.Err == nil; i++ {
		ws := &WebSocket{id: uint64(d.I64())}
		for k := d.Count(4); k > 0 && d.Err == nil; k-- {
			ws.tags = append(ws.tags, d.Str())
		}
		out = append(out, ws)
	}
	return out, d.Err
}

// WebSocketHandler is implemented by Durable Object classes that accept WebSockets: the
// host calls WebSocketMessage for each message of a socket the object accepted.
type WebSocketHandler interface {
	WebSocketMessage(ws *WebSocket, msg Message)
}

// WebSocketCloseHandler is implemented by classes that want to know when a client closed
// its socket (wasClean) or its connection ended without a closing handshake (code 1006).
type WebSocketCloseHandler interface {
	WebSocketClose(ws *WebSocket, code int, reason string, wasClean bool)
}

// WebSocketErrorHandler is implemented by classes that want to know when a socket ended on
// an error: the client broke the protocol, and the host closed the socket.
type WebSocketErrorHandler interface {
	WebSocketError(ws *WebSocket, err error)
}

// runWebSocketEvent delivers a hibernatable socket's event to its object.
func runWebSocketEvent(kind uint32) error {
	o, _, err := objectContext()
	if err != nil {
		return err
	}
	res, err := rawCall(workerabi.OpWSEvent, nil)
	if err != nil {
		return err
	}
	d := workerabi.Decoder{B: res}
	ws := &WebSocket{id: uint64(d.I64())}
	switch kind {
	case workerabi.KindWSMessage:
		typ := d.U8()
		m := Message{Type: MessageType(typ), Data: cloneBytes(&d)}
		if d.Err != nil {
			return d.Err
		}
		if h, ok := o.h.(WebSocketHandler); ok {
			h.WebSocketMessage(ws, m)
			return nil
		}
		return errors.New("durable object class has no WebSocketMessage method (sdk.WebSocketHandler)")
	case workerabi.KindWSClose:
		code, reason, clean := int(d.U32()), d.Str(), d.U8() == 1
		if d.Err != nil {
			return d.Err
		}
		if h, ok := o.h.(WebSocketCloseHandler); ok {
			h.WebSocketClose(ws, code, reason, clean)
		}
	default:
		msg := d.Str()
		if d.Err != nil {
			return d.Err
		}
		if h, ok := o.h.(WebSocketErrorHandler); ok {
			h.WebSocketError(ws, errors.New(msg))
		}
	}
	return nil
}

// WriteResponse writes resp (from a Durable Object's Fetch or from Fetch) to w: status,
// header fields and body, which it streams through and closes. A 101 from an object that
// accepted the request's WebSocket switches the client's connection.
func WriteResponse(w ResponseWriter, resp *Response) {
	h := w.Header()
	for _, f := range resp.Header.Fields() {
		h.Add(f.Name, f.Value)
	}
	w.WriteHeader(resp.StatusCode)
	if resp.Body != nil {
		io.Copy(w, resp.Body)
		resp.Body.Close()
	}
}
