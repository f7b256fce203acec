// Package workerabi is the wire format of the worker ABI shared by the host runtime (package
// worker) and the Go guest SDK (package sdk under sdk/go): the version, operation codes,
// statuses, invocation kinds and verge_handle results, and the encoder and decoder of ABI
// values (little-endian integers and length-prefixed byte strings). docs/workers-abi.md is the
// contract; this package is its one Go implementation.
//
// It is pure Go with no imports beyond the standard library's encoding helpers, so it builds
// for the host and for GOOS=wasip1 GOARCH=wasm alike.
package workerabi

// Version is the ABI version: the guest exports it as verge_abi_version. Version 2 guests
// host several Durable Objects per instance (each keyed by its ID, dropped on KindDOEvict);
// the host runs a guest that reports 1, or no version, with one object per instance.
const Version = 2

// VersionSharedObjects is the first version whose instances may host several Durable
// Objects at once.
const VersionSharedObjects = 2

// Host operation codes, the first argument of verge.call.
const (
	OpReqHead       = 1
	OpReqBody       = 2
	OpRespHead      = 3
	OpRespBody      = 4
	OpRespEnd       = 5
	OpLog           = 6
	OpEnv           = 7
	OpKVGet         = 16
	OpKVPut         = 17
	OpKVDelete      = 18
	OpKVList        = 19
	OpDOIDFromName  = 32
	OpDONewID       = 33
	OpDOIDFromStr   = 34
	OpDOFetch       = 35
	OpDOContext     = 36
	OpStGet         = 48
	OpStPut         = 49
	OpStDelete      = 50
	OpStList        = 51
	OpStDeleteAll   = 52
	OpStTxnBegin    = 53
	OpStTxnCommit   = 54
	OpStTxnRollback = 55
	OpStSQL         = 56
	OpAlarmGet      = 57
	OpAlarmSet      = 58
	OpAlarmDelete   = 59
	OpFetch         = 64

	// WebSockets (docs/workers-abi.md, WebSockets).
	OpWSAccept       = 80
	OpWSReceive      = 81
	OpWSSend         = 82
	OpWSClose        = 83
	OpWSAcceptObject = 84
	OpWSList         = 85
	OpWSEvent        = 86
	OpWSAttachSet    = 87
	OpWSAttachGet    = 88

	// OpInterleave (no argument) marks the invocation's next host operation as one during
	// which other invocations may run on the instance, nested in it, when it is a wait
	// (OpFetch, OpDOFetch, OpServiceFetch, OpSleep): the guest promises that it saved what they could
	// overwrite. A host that cannot nest ignores it. docs/workers.md, "Input and output
	// gates".
	OpInterleave = 120
	// OpSleep (u64 nanoseconds) waits, as wall time, up to the invocation's wall time
	// limit; after OpInterleave other requests to the object may run meanwhile.
	OpSleep = 121
)

// Host operation codes of streamed responses and bodies (docs/workers-abi.md, "Streaming").
const (
	// OpRespFlush sends the response head (when not sent yet) and the given body bytes, and
	// pushes them to the client at once.
	OpRespFlush = 8
	// OpBodyRead reads the next bytes of a streamed body by handle; an empty result is the
	// end of the body, and the handle is then released.
	OpBodyRead = 65
	// OpBodyClose releases a streamed body's handle before its end.
	OpBodyClose = 66
	// OpFetchStream is OpFetch whose result streams the body: status, header, a body handle
	// (0 when the body follows whole) and the first body bytes.
	OpFetchStream = 67
	// OpDOFetchStream is OpDOFetch with OpFetchStream's result.
	OpDOFetchStream = 68
)

// Host operation codes of the Cache API (docs/workers-abi.md, "Cache API"). Each argument
// starts with the cache's name ("default" for sdk.Cache()) followed by a request encoded as
// for OpFetch (method, URL, a reserved string, header fields, body; the body is ignored).
const (
	// OpCacheMatch answers u8 found, then when found OpFetchStream's result: a body handle
	// (0 when the body follows whole), status, header and the first body bytes.
	OpCacheMatch = 160
	// OpCachePut stores a response: after the request, u32 status, header fields and the
	// body. It answers u8 stored and, when not stored, the reason (a Cache-Status detail).
	// A non-GET request, a 206 and Vary: * fail with StatusInvalid.
	OpCachePut = 161
	// OpCacheDelete removes the stored responses of the request's URL: u8 deleted.
	OpCacheDelete = 162
)

// WebSocket message types, in WS_RECEIVE, WS_SEND and WS_EVENT.
const (
	WSText   = 1
	WSBinary = 2
	WSClose  = 8
)

// Statuses of host operations. StatusOK carries the result; the others carry an error
// message.
const (
	StatusOK          = 0
	StatusInternal    = 1
	StatusInvalid     = 2
	StatusLimit       = 3
	StatusUnavailable = 4
)

// Invocation kinds, the argument of verge_handle.
const (
	KindFetch   = 0
	KindDOFetch = 1
	KindDOAlarm = 2
	// KindWSMessage, KindWSClose and KindWSError deliver an event of a WebSocket held by
	// the host for a Durable Object (hibernation); the guest reads it with OpWSEvent.
	KindWSMessage = 3
	KindWSClose   = 4
	KindWSError   = 5
	// KindDOEvict tells an instance that hosts several objects (ABI version 2) that the
	// object named by DO_CONTEXT was evicted: the guest drops its in-memory value. Only
	// DO_CONTEXT and LOG are available; the next invocation of that object creates it anew.
	KindDOEvict = 8
)

// Results of verge_handle.
const (
	// RCOK is a completed invocation.
	RCOK = 0
	// RCFailed is a failed invocation: the host answers 500 and discards the instance.
	RCFailed = 1
	// RCAlarmFailed is an alarm handler that reported failure: the host retries the alarm
	// and keeps the instance.
	RCAlarmFailed = 2
)

// Scheduled events and service bindings (docs/workers-abi.md, "Scheduled events" and
// "Service bindings"); ops 96-103 are theirs.
const (
	// OpScheduledEvent (no argument) returns the scheduled event of a KindScheduled
	// invocation: str cron, i64 scheduled_time (Unix milliseconds, UTC). Other
	// invocations get StatusUnavailable.
	OpScheduledEvent = 96
	// OpServiceFetch (bytes binding, request head, bytes body) runs the request in the
	// worker bound as binding (a service binding), in this process under that worker's
	// own limits, and returns OpFetchStream's result: u32 body handle (0 when the body
	// follows whole), u32 status, header, bytes first body bytes. It counts as one
	// subrequest of the caller.
	OpServiceFetch = 97
)

// KindScheduled runs the worker's scheduled handler for a cron trigger's slot; the guest
// reads the event with OpScheduledEvent. There is no request and no response. A handler
// that reports failure returns RCAlarmFailed: the host counts it and keeps the instance
// (the slot is not retried).
const KindScheduled = 9

// Host operation codes of object storage buckets (docs/workers-abi.md, "Object storage").
// Each names the bucket by its binding first.
const (
	// OpObjHead returns an object's metadata: u8 found, [object].
	OpObjHead = 136
	// OpObjGet reads an object under ranges and preconditions: u8 found, [u32 status,
	// object, i64 offset, i64 length, u32 body handle (0: the body follows whole), bytes
	// first body bytes].
	OpObjGet = 137
	// OpObjPut stores an object from a body source (ObjSource*): u32 handle for OpObjWrite
	// when the source is ObjSourceStream, else 0 and the object.
	OpObjPut = 138
	// OpObjWrite writes the next bytes of a streamed put or part by handle.
	OpObjWrite = 139
	// OpObjFinish ends a streamed put (returning the object) or part (returning the part).
	OpObjFinish = 140
	// OpObjDelete removes keys.
	OpObjDelete = 141
	// OpObjList lists objects and delimited prefixes.
	OpObjList = 142
	// OpObjUploadCreate starts a multipart upload and returns its id.
	OpObjUploadCreate = 143
	// OpObjUploadPart uploads a part from a body source, like OpObjPut.
	OpObjUploadPart = 144
	// OpObjUploadComplete assembles the parts listed and returns the object.
	OpObjUploadComplete = 145
	// OpObjUploadAbort ends an upload and drops its parts.
	OpObjUploadAbort = 146
	// OpObjRespond sends the response of an object body handle: the head given, with the
	// body's remaining length as Content-Length, then the body, copied by the host, and
	// ends the response.
	OpObjRespond = 147
)

// Body sources of OpObjPut and OpObjUploadPart.
const (
	// ObjSourceInline: the body follows in the call.
	ObjSourceInline = 0
	// ObjSourceRequest: the rest of the invocation's request body, read by the host.
	ObjSourceRequest = 1
	// ObjSourceStream: the guest writes the body with OpObjWrite and ends it with
	// OpObjFinish.
	ObjSourceStream = 2
	// ObjSourceHandle: the rest of a streamed body handle (OpBodyRead's), read by the host.
	ObjSourceHandle = 3
)

// Queues (docs/workers-abi.md, "Queues").
const (
	// OpQueueSend (str binding, u32 count, count × {bytes body, str content_type, u32
	// delay_seconds}) stores messages in the queue bound as binding; they are durable when
	// it returns. No result.
	OpQueueSend = 128
	// OpQueueBatch (no argument) returns the batch of a KindQueue invocation: str queue,
	// u32 count, count × {str id, i64 timestamp_ms, u32 attempts, str content_type, bytes
	// body}.
	OpQueueBatch = 129
	// OpQueueAck (u8 all, u32 count, count × u32 index) acknowledges messages of the batch
	// by index (all of them when all is 1); they are removed for good when it returns.
	OpQueueAck = 130
	// OpQueueRetry (u8 all, u32 count, count × u32 index, i64 delay_ms) marks messages of
	// the batch to be delivered again after delay_ms (-1: the consumer's retry_delay).
	OpQueueRetry = 131
)

// KindQueue delivers a batch of queue messages to the worker's queue handler; the guest
// reads it with OpQueueBatch. RCOK acknowledges the messages the handler left alone;
// RCFailed (or a crash) retries them.
const KindQueue = 10

// Containers (docs/workers-abi.md, "Containers"): ops 176-191 and kind 11. The container
// ops act on the container of the Durable Object the invocation runs in (its class must
// have one, config field containers); other invocations get StatusUnavailable.
const (
	// OpContainerStart (u32 n, n × {str name, str value}, u8 has_args, [u32 m, m × str
	// arg]) starts the object's container with these environment variables (added to the
	// configured ones) and, when has_args, these arguments, unless it runs already, and
	// returns when its port accepts connections. No result.
	OpContainerStart = 176
	// OpContainerFetch (request head and body as for OpFetch; the URL's host is ignored)
	// sends the request to the object's container, starting it first when it does not
	// run, and returns OpFetchStream's result: u32 body handle (0 when the body follows
	// whole), u32 status, header, bytes first body bytes. It counts as a subrequest.
	OpContainerFetch = 177
	// OpContainerState (no argument) returns u8 state: ContainerStopped, ...
	OpContainerState = 178
	// OpContainerStop (no argument) stops the object's container and returns when it
	// exited. No result.
	OpContainerStop = 179
	// OpContainerExit (no argument) returns the event of a KindContainerExit invocation:
	// i32 exit code (-1 when unknown), str reason ("stopped", "sleep", "exited",
	// "crashed" or "shutdown").
	OpContainerExit = 180
)

// Streamed request bodies (docs/workers-abi.md, "Streamed request bodies"): the request
// body of these calls is the rest of the invocation's own request body, which the host
// reads and passes on itself (no byte passes through guest memory); the guest cannot read
// it afterwards. They are in the containers' range, which reserved them.
const (
	// OpContainerFetchBody is OpContainerFetch whose argument ends after the header (no
	// bytes body): the host streams the rest of the invocation's request body to the
	// container. Same result.
	OpContainerFetchBody = 181
	// OpDOFetchBody is OpDOFetchStream whose argument ends after the request head (no
	// bytes body): the object's invocation reads the rest of the calling invocation's
	// request body as its own, while the caller waits and after. Same result.
	OpDOFetchBody = 182
)

// States of a container, OpContainerState's result.
const (
	ContainerStopped  = 0
	ContainerStarting = 1
	ContainerRunning  = 2
	ContainerStopping = 3
	ContainerCrashed  = 4
)

// KindContainerExit tells a Durable Object that its container exited; the guest reads the
// event with OpContainerExit. Storage is available as in an alarm; there is no request.
const KindContainerExit = 11

// AI binding (docs/workers-abi.md, "AI"). Ops 192–199 are reserved for it.
const (
	// OpAIRun (str binding, str path, bytes body) sends an OpenAI-compatible request (path
	// /chat/completions, /completions or /embeddings; body its JSON, with "model") to the
	// providers the binding grants, with fallback. It answers u32 handle, str provider, u32
	// status, bytes body: the whole body with handle 0, or, for a stream (text/event-stream),
	// a body handle read with OpBodyRead and the first bytes. One subrequest.
	OpAIRun = 192
)
