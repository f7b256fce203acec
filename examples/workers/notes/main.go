// Command notes is a Verge worker whose Durable Object keeps notebooks in SQL, with
// transactions, the key-value storage API and alarms:
//
//	POST   /notes/NAME            adds the body as a note, answers its id
//	POST   /notes/NAME?fail=1     adds it inside a transaction that then fails (rolled back)
//	GET    /notes/NAME            lists the notes, one "id text" per line
//	POST   /notes/NAME/remind?ms=N sets an alarm N ms ahead; it adds a note "reminder"
//	GET    /notes/NAME/stats      answers "notes=N alarms=N pending=true|false"
//	DELETE /notes/NAME            deletes the notebook (all storage)
//
// Bindings (worker.yaml): NOTES, a Durable Object namespace of class Notebook.
package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	sdk "github.com/verge-edge/verge/sdk/go"
)

// Notebook is the Durable Object class.
type Notebook struct {
	st     *sdk.Storage
	schema bool
}

func (n *Notebook) ensureSchema() error {
	if n.schema {
		return nil
	}
	_, err := n.st.SQL("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL, created INTEGER NOT NULL)")
	n.schema = err == nil
	return err
}

func (n *Notebook) add(text string) (int64, error) {
	c, err := n.st.SQL("INSERT INTO notes (text, created) VALUES (?, ?) RETURNING id", text, time.Now().UnixMilli())
	if err != nil {
		return 0, err
	}
	if len(c.Rows) != 1 {
		return 0, errors.New("insert returned no id")
	}
	id, _ := c.Rows[0][0].(int64)
	return id, nil
}

// Fetch serves the notebook's requests.
func (n *Notebook) Fetch(w sdk.ResponseWriter, r *sdk.Request) {
	if err := n.ensureSchema(); err != nil {
		sdk.ErrorResponse(w, err.Error(), 500)
		return
	}
	path := r.Path()
	switch {
	case r.Method == "POST" && strings.HasSuffix(path, "/remind"):
		ms, _ := strconv.Atoi(r.URL().Query().Get("ms"))
		if err := n.st.SetAlarm(time.Now().Add(time.Duration(ms) * time.Millisecond)); err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		w.WriteHeader(202)
	case r.Method == "GET" && strings.HasSuffix(path, "/stats"):
		c, err := n.st.SQL("SELECT count(*) FROM notes")
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		alarms, _, _ := n.st.Get("meta:alarms")
		_, pending, _ := n.st.GetAlarm()
		fmt.Fprintf(w, "notes=%d alarms=%s pending=%v", c.Rows[0][0], orZero(alarms), pending)
	case r.Method == "POST":
		body, _ := io.ReadAll(r.Body)
		var id int64
		err := n.st.Transaction(func() error {
			var err error
			if id, err = n.add(string(body)); err != nil {
				return err
			}
			if err := n.st.Put("meta:last", []byte(strconv.FormatInt(id, 10))); err != nil {
				return err
			}
			if r.URL().Query().Get("fail") != "" {
				return errors.New("failing on purpose")
			}
			return nil
		})
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		fmt.Fprint(w, id)
	case r.Method == "GET":
		c, err := n.st.SQL("SELECT id, text FROM notes ORDER BY id")
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		for _, row := range c.Rows {
			fmt.Fprintf(w, "%d %s\n", row[0], row[1])
		}
	case r.Method == "DELETE":
		if err := n.st.DeleteAll(); err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		n.schema = false
		w.WriteHeader(204)
	default:
		sdk.ErrorResponse(w, "method not allowed", 405)
	}
}

// Alarm adds a reminder note and counts the alarms in the key-value storage.
func (n *Notebook) Alarm(info sdk.AlarmInfo) error {
	if err := n.ensureSchema(); err != nil {
		return err
	}
	if _, err := n.add("reminder"); err != nil {
		return err
	}
	v, _, err := n.st.Get("meta:alarms")
	if err != nil {
		return err
	}
	c, _ := strconv.Atoi(string(v))
	return n.st.Put("meta:alarms", []byte(strconv.Itoa(c+1)))
}

func orZero(b []byte) string {
	if len(b) == 0 {
		return "0"
	}
	return string(b)
}

func init() {
	sdk.DefineDurableObject("Notebook", func(s *sdk.DurableObjectState) sdk.DurableObjectHandler {
		return &Notebook{st: s.Storage()}
	})
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		rest, ok := strings.CutPrefix(r.Path(), "/notes/")
		name, _, _ := strings.Cut(rest, "/")
		if !ok || name == "" {
			sdk.ErrorResponse(w, "not found", 404)
			return
		}
		resp, err := sdk.DurableObject("NOTES").IDFromName(name).Fetch(r)
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 502)
			return
		}
		for _, f := range resp.Header.Fields() {
			w.Header().Add(f.Name, f.Value)
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
}

func main() {}
