package sdk

import "github.com/verge-edge/verge/internal/workerabi"

// ServiceBinding calls another worker of the same server through a service binding
// (services: [{binding: AUTH, service: auth-worker}] in the worker's configuration).
type ServiceBinding struct {
	name string
}

// Service returns the service binding name. Calls through a name the worker's
// configuration does not bind fail with ErrUnavailable.
func Service(name string) *ServiceBinding { return &ServiceBinding{name: name} }

// Fetch sends r to the bound worker and returns its response once the head arrived; Body
// streams the rest as the callee writes it (as for Fetch). The callee runs in the same
// process, without a network hop, under its own limits: its CPU time, wall time, memory
// and subrequests are not the caller's. r.RawURL must be an absolute http or https URL;
// its host is only what the callee sees. The call counts as one subrequest of the caller.
//
// A callee that fails before its response head fails the call: ErrLimit when it exceeded
// one of its limits (or all its instances were busy), ErrUnavailable when it is not
// deployed, ErrInternal otherwise; answer the client with a 5xx status then. A chain of
// service calls nests at most 16 workers deep (ErrLimit beyond).
//
// In a Durable Object, the object's input gate opens while it waits for the head, as
// across a subrequest: other requests to the object, such as one the callee sends back to
// it, may run meanwhile.
func (s *ServiceBinding) Fetch(r *Request) (*Response, error) {
	var e workerabi.Encoder
	e.Str(s.name)
	if err := encodeRequest(&e, r); err != nil {
		return nil, err
	}
	mayInterleave()
	res, err := rawCall(workerabi.OpServiceFetch, e.B)
	if err != nil {
		return nil, err
	}
	return decodeStreamResponse(res)
}
