// Command chat is a Verge worker with WebSockets: chat rooms that are Durable Objects holding
// their members' sockets with hibernation, and an echo socket the worker holds itself.
//
//	GET /room/NAME?name=ME  (WebSocket) joins room NAME as ME: every text message a member
//	                        sends is broadcast to every member of the room, sender included,
//	                        as "ME: text", in the order the room received them; the message
//	                        "/who" answers the sender alone with the number of members
//	GET /room/NAME/members  answers the number of members of room NAME
//	GET /echo               (WebSocket) echoes every message back, held by the worker itself
//
// The room keeps no instance per member: the host holds the sockets, evicts an idle room and
// wakes it with the next message; each member's name travels with its socket as an
// attachment, so it survives the eviction. It expects the binding ROOMS (a Durable Object
// namespace of class Room):
//
//	workers:
//	  - name: chat
//	    package: ./examples/workers/chat
//	    durable_objects: [{binding: ROOMS, class: Room}]
package main

import (
	"strconv"
	"strings"

	sdk "github.com/verge-edge/verge/sdk/go"
)

// Room is the Durable Object class: one chat room.
type Room struct {
	state *sdk.DurableObjectState
}

// member is what a room keeps with each socket.
type member struct {
	Name string `json:"name"`
}

// Fetch accepts a member's socket, or answers the member count.
func (c *Room) Fetch(w sdk.ResponseWriter, r *sdk.Request) {
	if strings.HasSuffix(r.Path(), "/members") {
		socks, err := c.state.GetWebSockets("")
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		w.Write([]byte(strconv.Itoa(len(socks))))
		return
	}
	if !sdk.IsWebSocketUpgrade(r) {
		sdk.ErrorResponse(w, "a WebSocket upgrade is required", 426)
		return
	}
	name := r.URL().Query().Get("name")
	if name == "" {
		name = "anonymous"
	}
	ws, err := c.state.AcceptWebSocket(w, r, "member")
	if err != nil {
		sdk.ErrorResponse(w, err.Error(), 400)
		return
	}
	if err := ws.SerializeAttachment(member{Name: name}); err != nil {
		sdk.Log(sdk.LevelWarn, "attachment: %v", err)
	}
}

// WebSocketMessage broadcasts a member's message to the room.
func (c *Room) WebSocketMessage(ws *sdk.WebSocket, msg sdk.Message) {
	if msg.Text() == "/who" {
		socks, _ := c.state.GetWebSockets("member")
		ws.SendText("members: " + strconv.Itoa(len(socks)))
		return
	}
	var m member
	if ok, err := ws.DeserializeAttachment(&m); !ok || err != nil {
		m.Name = "anonymous"
	}
	out := m.Name + ": " + msg.Text()
	socks, err := c.state.GetWebSockets("member")
	if err != nil {
		sdk.Log(sdk.LevelWarn, "listing sockets: %v", err)
		return
	}
	for _, s := range socks {
		// A member too slow to keep up is disconnected by the host; the others go on.
		s.SendText(out)
	}
}

// WebSocketClose logs a member leaving.
func (c *Room) WebSocketClose(ws *sdk.WebSocket, code int, reason string, wasClean bool) {
	sdk.Log(sdk.LevelDebug, "member left: %d %q clean=%v", code, reason, wasClean)
}

func init() {
	sdk.DefineDurableObject("Room", func(s *sdk.DurableObjectState) sdk.DurableObjectHandler {
		return &Room{state: s}
	})
	sdk.Serve(serve)
}

func serve(w sdk.ResponseWriter, r *sdk.Request) {
	path := r.Path()
	switch {
	case path == "/echo":
		echo(w, r)
	case strings.HasPrefix(path, "/room/"):
		name, _, _ := strings.Cut(strings.TrimPrefix(path, "/room/"), "/")
		if name == "" {
			sdk.ErrorResponse(w, "missing room name", 400)
			return
		}
		// The request goes to the room unchanged: its handshake travels with it, and the
		// room's 101 switches this client's connection.
		resp, err := sdk.DurableObject("ROOMS").IDFromName(name).Fetch(r)
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		sdk.WriteResponse(w, resp)
	default:
		sdk.ErrorResponse(w, "not found", 404)
	}
}

// echo holds a socket in the worker itself and echoes each message until the client closes.
func echo(w sdk.ResponseWriter, r *sdk.Request) {
	ws, err := sdk.AcceptWebSocket(w, r)
	if err != nil {
		sdk.ErrorResponse(w, err.Error(), 426)
		return
	}
	for {
		m, err := ws.Receive()
		if err != nil {
			return // closed: the host answered the client's close
		}
		if m.Text() == "bye" && m.Type == sdk.TextMessage {
			ws.Close(1000, "bye")
			return
		}
		if err := ws.Send(m.Type, m.Data); err != nil {
			return
		}
	}
}

func main() {}
