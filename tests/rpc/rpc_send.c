/*
 * rpc_send: a request to a crjob daemon from the command line, for tests.
 *
 *   rpc_send [--munge-socket S] [--timeout MS] HOST:PORT OP [KEY=VALUE]...
 *     KEY: id job gen store owner stop deadline node pidns from
 *          tree=PID[:WRITER[:CPUSET]] (repeatable)  remap=OLD=NEW (repeatable)
 *   rpc_send [--munge-socket S] --garbage HOST:PORT
 *     bytes that are not a Msg, in an authenticated session (prints "closed")
 *
 * Prints the reply: "error N", "message ...", "generation G", one
 * "tree PID writer W bytes B cpuset C" per tree, "node ..." for a PING;
 * before it, "event tree ..." for each tree of each EVENT.
 * Exits 0 if the reply has error 0, 1 if another, 3 if no reply came.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <munge.h>

#include "rpc.h"

#define MAX_ITEMS	64

static int op_of(const char *name)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value_by_name(&crjob__op__descriptor, name);

	return v ? v->value : -1;
}

static void print_tree(const char *prefix, const Crjob__Tree *t)
{
	printf("%stree %u writer %s bytes %llu cpuset %s\n", prefix, t->pid,
	       t->writer ?: "-", (unsigned long long)t->bytes, t->cpuset ?: "-");
}

static void print_reply(const Crjob__Msg *m)
{
	size_t i;

	printf("error %d\n", m->error);
	if (m->message)
		printf("message %s\n", m->message);
	if (m->has_generation)
		printf("generation %llu\n", (unsigned long long)m->generation);
	for (i = 0; i < m->n_trees; i++)
		print_tree("", m->trees[i]);
	if (m->node) {
		printf("node %s agent %s ip %s topology %s\n", m->node->name, m->node->agent,
		       m->node->ip, m->node->topology ?: "-");
		for (i = 0; i < m->node->n_trees; i++)
			print_tree("node ", m->node->trees[i]);
	}
}

/* a credential of this munged around bytes that are not a Msg */
/* bytes that are not a Msg in an authenticated DATA frame: "closed" expected */
static int send_garbage(struct rpc *r, const char *hostport)
{
	static const unsigned char junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
	int ret = rpc_call_raw(r, hostport, junk, sizeof(junk), 0, 5000);

	if (ret == -ECONNRESET) {
		printf("closed\n");
		return 0;
	}
	printf(ret ? "error %d\n" : "answered\n", ret);
	return ret ? 3 : 1;
}

static void print_event(const Crjob__Msg *ev, void *arg)
{
	size_t i;

	for (i = 0; i < ev->n_trees; i++)
		print_tree("event ", ev->trees[i]);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	Crjob__Tree trees[MAX_ITEMS], *tp[MAX_ITEMS];
	Crjob__IpRemap remaps[MAX_ITEMS], *rp[MAX_ITEMS];
	Crjob__Msg req = CRJOB__MSG__INIT, *rep = NULL;
	const char *sock = NULL, *addr;
	int timeout = 120000, i, op, ret;
	struct rpc *r;

	for (i = 1; i < argc && !strncmp(argv[i], "--", 2); i++) {
		if (!strcmp(argv[i], "--munge-socket") && i + 1 < argc)
			sock = argv[++i];
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--garbage") && i + 1 < argc)
			return rpc_new(sock, 0, &r) ? 3 : send_garbage(r, argv[i + 1]);
		else
			break;
	}
	if (argc - i < 2 || (op = op_of(argv[i + 1])) < 0) {
		fprintf(stderr, "usage: rpc_send [--munge-socket S] [--timeout MS] HOST:PORT OP "
			"[KEY=VALUE]...\n");
		return 2;
	}
	addr = argv[i];
	req.kind = CRJOB__KIND__REQUEST;
	req.id = getpid();
	req.op = op;
	for (i += 2; i < argc; i++) {
		char *k = argv[i], *v = strchr(k, '='), *w, *c;

		if (!v) {
			fprintf(stderr, "rpc_send: '%s' is not KEY=VALUE\n", k);
			return 2;
		}
		*v++ = '\0';
		if (!strcmp(k, "id")) {
			req.id = strtoull(v, NULL, 10);
		} else if (!strcmp(k, "job")) {
			req.job = v;
		} else if (!strcmp(k, "gen")) {
			req.has_generation = true;
			req.generation = strtoull(v, NULL, 10);
		} else if (!strcmp(k, "store")) {
			req.store = v;
		} else if (!strcmp(k, "owner")) {
			req.has_owner = true;
			req.owner = strtoul(v, NULL, 10);
		} else if (!strcmp(k, "stop")) {
			req.has_stop = true;
			req.stop = atoi(v);
		} else if (!strcmp(k, "pidns")) {
			req.has_pidns = true;
			req.pidns = atoi(v);
		} else if (!strcmp(k, "deadline")) {
			req.has_deadline_ms = true;
			req.deadline_ms = strtoul(v, NULL, 10);
		} else if (!strcmp(k, "node")) {
			req.node_name = v;
		} else if (!strcmp(k, "from")) {
			req.from_job = v;
		} else if (!strcmp(k, "tree") && req.n_trees < MAX_ITEMS) {
			Crjob__Tree *t = &trees[req.n_trees];

			crjob__tree__init(t);
			w = strchr(v, ':');
			if (w) {
				*w++ = '\0';
				c = strchr(w, ':');
				if (c) {
					*c++ = '\0';
					t->cpuset = c;
				}
				t->writer = *w ? w : NULL;
			}
			t->pid = strtoul(v, NULL, 10);
			tp[req.n_trees++] = t;
		} else if (!strcmp(k, "remap") && req.n_remap < MAX_ITEMS) {
			Crjob__IpRemap *m = &remaps[req.n_remap];

			crjob__ip_remap__init(m);
			m->old_ip = v;
			m->new_ip = strchr(v, '=');
			if (!m->new_ip) {
				fprintf(stderr, "rpc_send: remap=OLD=NEW\n");
				return 2;
			}
			*m->new_ip++ = '\0';
			rp[req.n_remap++] = m;
		} else {
			fprintf(stderr, "rpc_send: unknown key '%s'\n", k);
			return 2;
		}
	}
	req.trees = tp;
	req.remap = rp;
	if (rpc_new(sock, 0, &r))
		return 3;
	ret = rpc_call(r, addr, &req, timeout, print_event, NULL, &rep);
	rpc_free(r);
	if (ret) {
		printf("rpc %s\n", strerror(-ret));
		return 3;
	}
	print_reply(rep);
	ret = rep->error ? 1 : 0;
	crjob__msg__free_unpacked(rep, NULL);
	return ret;
}
