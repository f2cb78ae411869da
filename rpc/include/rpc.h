/*
 * rpc: munge-authenticated protobuf messages over TCP, on libevent, shared
 * by crjob (the CLI), crjob-coord and crjob-agent.
 *
 * A frame is a 4-byte big-endian length, a type byte and a body.  A
 * connection opens with a handshake authenticated by munge: the client's
 * HELLO and the server's WELCOME are munge credentials around ephemeral
 * X25519 public keys (the WELCOME also names the HELLO it answers), which
 * tells each side the other's uid and gid; munged refuses a replayed
 * credential.  Every later frame is DATA: one packed Crjob__Msg
 * (proto/rpc.proto) sealed with AES-256-GCM under the key both derived, and
 * a counter per direction, so that a forged, altered, replayed or reflected
 * frame is refused.  Only the handshake costs munged round trips: a
 * coordinator that keeps its connections to 256 agents sends a phase's
 * requests without one (rpc/include/session.h).
 *
 * A frame that fails is logged with its peer and reason, and its connection
 * is closed; nothing else is affected.
 *
 * Every function returns 0 or a negative errno and logs the error once with
 * the peer's address.  No global state: a struct rpc holds the munge context.
 */
#ifndef CRJOB_RPC_H
#define CRJOB_RPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rpc.pb-c.h"

#define RPC_MAX_FRAME		(16u << 20)	/* bytes of one credential */
#define RPC_DEFAULT_AGENT_PORT	7710
#define RPC_DEFAULT_COORD_PORT	7711

struct event_base;
struct rpc;
struct rpc_conn;
struct rpc_listener;

/* who sent a message, as munge says */
struct rpc_peer {
	uid_t uid;
	gid_t gid;
	char addr[64];		/* "HOST:PORT" of the other end */
};

/*
 * Called for each authenticated message.  m is freed after the callback
 * returns (crjob__msg__free_unpacked); copy what is kept.
 */
typedef void (*rpc_msg_cb)(struct rpc_conn *c, const Crjob__Msg *m,
			   const struct rpc_peer *from, void *arg);
/* The connection closed (err 0 at EOF) and will be freed after this returns. */
typedef void (*rpc_close_cb)(struct rpc_conn *c, int err, void *arg);

/*
 * munge_socket: path of munged's socket, NULL for $CRJOB_MUNGE_SOCKET or
 * munge's default.  ttl_s: credential lifetime, 0 for munge's default.
 */
int rpc_new(const char *munge_socket, int ttl_s, struct rpc **out);
void rpc_free(struct rpc *r);

/* frame types */
#define RPC_FRAME_HELLO		1
#define RPC_FRAME_WELCOME	2
#define RPC_FRAME_DATA		3

/* Servers: listen on "HOST:PORT" (HOST may be 0.0.0.0); port 0 picks one. */
int rpc_listen(struct rpc *r, struct event_base *base, const char *hostport,
	       rpc_msg_cb on_msg, rpc_close_cb on_close, void *arg,
	       struct rpc_listener **out);
/* the port actually bound */
int rpc_listener_port(const struct rpc_listener *l);
void rpc_listener_free(struct rpc_listener *l);

/* Clients on an event loop: connect is asynchronous, sends are queued. */
int rpc_connect(struct rpc *r, struct event_base *base, const char *hostport,
		rpc_msg_cb on_msg, rpc_close_cb on_close, void *arg, struct rpc_conn **out);
int rpc_send(struct rpc_conn *c, const Crjob__Msg *m);
void rpc_conn_close(struct rpc_conn *c);	/* without calling on_close */
const char *rpc_conn_addr(const struct rpc_conn *c);
void rpc_conn_set_data(struct rpc_conn *c, void *data);
void *rpc_conn_data(const struct rpc_conn *c);

/*
 * Blocking call for the CLI: connect, send req, wait for the REPLY with its
 * id (EVENTs in between go to on_event if given), within timeout_ms.
 * -ETIMEDOUT, -ECONNREFUSED, ... on failure; *reply is freed by the caller.
 */
typedef void (*rpc_event_cb)(const Crjob__Msg *ev, void *arg);
int rpc_call(struct rpc *r, const char *hostport, const Crjob__Msg *req, int timeout_ms,
	     rpc_event_cb on_event, void *arg, Crjob__Msg **reply);

/*
 * For tests and diagnostics.  rpc_hello_frame: a complete HELLO frame (a key
 * of its own).  rpc_call_raw: open a session like rpc_call and send len bytes
 * of payload (need not be a Msg) as one DATA frame, altered in transit with
 * RPC_RAW_TAMPER, sent twice with RPC_RAW_REPLAY; 0 if the server answered
 * (the replay too), -ECONNRESET if it closed the connection instead.
 */
#define RPC_RAW_TAMPER	1
#define RPC_RAW_REPLAY	2
int rpc_hello_frame(struct rpc *r, uint8_t **frame, size_t *len);
int rpc_call_raw(struct rpc *r, const char *hostport, const void *payload, size_t len,
		 int flags, int timeout_ms);

/* Helpers */
const char *rpc_op_name(Crjob__Op op);
/* "HOST:PORT" -> sockaddr_in; -EINVAL if malformed */
struct sockaddr_in;
int rpc_parse_hostport(const char *hostport, int default_port, struct sockaddr_in *sa);

#endif
