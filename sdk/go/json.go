package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxJSONBody is the largest request body ReadJSON accepts: 1 MiB.
const MaxJSONBody = 1 << 20

// JSONError is a request body ReadJSON refused: Status is 400 for a body that is empty or
// not valid JSON for the target, 413 for one larger than the limit. WriteJSONError answers
// it with that status.
type JSONError struct {
	Status int
	Err    error
}

func (e *JSONError) Error() string { return e.Err.Error() }

func (e *JSONError) Unwrap() error { return e.Err }

// ReadJSON decodes the JSON body of r into v, reading at most MaxJSONBody bytes. An empty
// body, a body with anything after the value, or one that does not fit v is a *JSONError
// with Status 400; a larger body one with Status 413.
func ReadJSON(r *Request, v any) error { return ReadJSONLimit(r, v, MaxJSONBody) }

// ReadJSONLimit is ReadJSON with a body limit of its own (limit > 0).
func ReadJSONLimit(r *Request, v any, limit int64) error {
	if r.Body == nil {
		return &JSONError{Status: 400, Err: errors.New("request body is empty, want JSON")}
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return fmt.Errorf("read request body: %w", err)
	}
	if int64(len(b)) > limit {
		return &JSONError{Status: 413, Err: fmt.Errorf("request body is larger than %d bytes", limit)}
	}
	if len(b) == 0 {
		return &JSONError{Status: 400, Err: errors.New("request body is empty, want JSON")}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &JSONError{Status: 400, Err: fmt.Errorf("bad JSON body: %w", err)}
	}
	return nil
}

// WriteJSON answers with status and v encoded as JSON (Content-Type application/json). When
// v does not encode it answers 500 instead and returns the error.
func WriteJSON(w ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		ErrorResponse(w, "cannot encode JSON response", 500)
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// WriteJSONError answers err as {"error": "..."}: with the Status of a *JSONError (from
// ReadJSON) and the Code's status for an *RPCError's code, otherwise 500.
func WriteJSONError(w ResponseWriter, err error) {
	status := 500
	var je *JSONError
	var re *RPCError
	switch {
	case errors.As(err, &je):
		status = je.Status
	case errors.As(err, &re):
		status = rpcStatus(re.Code)
	}
	_ = WriteJSON(w, status, struct {
		Error string `json:"error"`
	}{err.Error()})
}

// JSON reads the response body (at most 32 MiB), closes it and decodes it into v.
func (r *Response) JSON(v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("bad JSON response (status %d): %w", r.StatusCode, err)
	}
	return nil
}
