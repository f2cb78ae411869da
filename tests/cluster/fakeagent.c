/*
 * fakeagent: speaks the agent's side of the protocol (rpc.h) without dumping
 * anything, for the coordinator's tests and benchmark.  One process serves
 * any number of ports, each an agent of its own.
 *
 *   fakeagent [--listen HOST:PORT]... [--ports BASE --count N] [--store DIR]
 *             [--munge-socket PATH] [--fail-at OP] [--drop-at OP]
 *             [--delay-ms N [--delay-at OP]] [--log FILE] [--ready FILE] [--pidfile FILE]
 *
 * Every request is answered (after --delay-ms, for every op or --delay-at's
 * only) with success, except --fail-at's (error -EIO, "fake failure at OP")
 * and --drop-at's (never answered).  DUMP writes one tiny real writer per
 * tree into the store (blob fake-WRITER) so that the commit works.  --log
 * gets one line per request: "TIME PORT OP job=J gen=G node=N owner=U uid=U
 * stop=0|1 pidns=0|1 trees=PID:WRITER,... remap=OLD=NEW,...".  --ready gets the bound ports,
 * one a line, once all listen.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"
#include "rpc.h"
#include "store.h"

struct fa {
	struct event_base *base;
	struct rpc *rpc;
	const char *store_dir, *fail_at, *drop_at, *delay_at;
	int delay_ms;
	FILE *log;
	struct store *store;
	char store_open_dir[4096];
	struct pending *pending;
};

struct fport {
	struct fa *fa;
	int port;
	struct rpc_listener *l;
};

/* a reply waiting for its delay */
struct pending {
	struct pending *next;
	struct fa *fa;
	struct rpc_conn *c;
	Crjob__Msg *reply;
	struct event *ev;
};

static const char *op_lc(Crjob__Op op)
{
	static char buf[32];
	const char *n = rpc_op_name(op);
	int i;

	for (i = 0; n[i] && i < 31; i++)
		buf[i] = n[i] >= 'A' && n[i] <= 'Z' ? n[i] + 32 : n[i];
	buf[i] = '\0';
	return buf;
}

static void log_req(struct fport *p, const Crjob__Msg *m, const struct rpc_peer *from)
{
	struct timeval tv;
	FILE *f = p->fa->log;
	size_t i;

	if (!f)
		return;
	gettimeofday(&tv, NULL);
	fprintf(f, "%ld.%06ld %d %s job=%s gen=%llu node=%s owner=%u uid=%u stop=%d pidns=%d "
		"trees=", (long)tv.tv_sec, (long)tv.tv_usec, p->port, op_lc(m->op),
		m->job ? m->job : "-", (unsigned long long)m->generation,
		m->node_name ? m->node_name : "-", m->owner, from->uid, m->stop, m->pidns);
	for (i = 0; i < m->n_trees; i++)
		fprintf(f, "%s%u:%s", i ? "," : "", m->trees[i]->pid,
			m->trees[i]->writer ? m->trees[i]->writer : "-");
	fprintf(f, " remap=");
	for (i = 0; i < m->n_remap; i++)
		fprintf(f, "%s%s=%s", i ? "," : "", m->remap[i]->old_ip, m->remap[i]->new_ip);
	fprintf(f, "\n");
	fflush(f);
}

static int get_store(struct fa *fa, const char *dir, struct store **out)
{
	int ret;

	if (!dir)
		return -EINVAL;
	if (fa->store && strcmp(fa->store_open_dir, dir)) {
		store_close(fa->store);
		fa->store = NULL;
	}
	if (!fa->store) {
		ret = store_open(dir, &fa->store);
		if (ret)
			return ret;
		snprintf(fa->store_open_dir, sizeof(fa->store_open_dir), "%s", dir);
	}
	*out = fa->store;
	return 0;
}

/* one tiny writer per tree, finished (fsync'ed, .done) as a real dump's */
static int fake_dump(struct fa *fa, const Crjob__Msg *m, Crjob__Msg *rep)
{
	struct store_writer *w;
	struct store *s;
	char blob[300];
	size_t i;
	int ret;

	ret = get_store(fa, fa->store_dir ? fa->store_dir : m->store, &s);
	for (i = 0; !ret && i < m->n_trees; i++) {
		const char *wr = m->trees[i]->writer;

		if (!wr)
			return -EINVAL;
		ret = store_writer_begin(s, m->job, m->generation, wr, 0, &w);
		if (ret)
			break;
		snprintf(blob, sizeof(blob), "fake-%s", wr);
		ret = store_put_blob(w, blob, wr, strlen(wr));
		if (ret) {
			store_writer_abort(w);
			break;
		}
		ret = store_writer_finish(w);
		rep->trees[i]->has_bytes = 1;
		rep->trees[i]->bytes = strlen(wr);
	}
	return ret;
}

static void send_reply(evutil_socket_t fd, short what, void *arg)
{
	struct pending *pd = arg, **pp;

	if (pd->c)
		rpc_send(pd->c, pd->reply);
	for (pp = &pd->fa->pending; *pp; pp = &(*pp)->next)
		if (*pp == pd) {
			*pp = pd->next;
			break;
		}
	crjob__msg__free_unpacked(pd->reply, NULL);
	event_free(pd->ev);
	free(pd);
}

/* the reply: a copy of the request's trees, error set on --fail-at */
static Crjob__Msg *make_reply(struct fa *fa, const Crjob__Msg *m)
{
	Crjob__Msg tmp = CRJOB__MSG__INIT, *rep;
	uint8_t *buf;
	size_t len;
	char why[100];
	int ret = 0;

	tmp.kind = CRJOB__KIND__REPLY;
	tmp.id = m->id;
	tmp.op = m->op;
	tmp.trees = m->trees;
	tmp.n_trees = m->n_trees;
	len = crjob__msg__get_packed_size(&tmp);
	buf = malloc(len + 1);
	if (!buf)
		return NULL;
	crjob__msg__pack(&tmp, buf);
	rep = crjob__msg__unpack(NULL, len, buf);
	free(buf);
	if (!rep)
		return NULL;
	if (fa->fail_at && !strcmp(fa->fail_at, op_lc(m->op))) {
		ret = -EIO;
		snprintf(why, sizeof(why), "fake failure at %s", op_lc(m->op));
	} else if (m->op == CRJOB__OP__DUMP) {
		ret = fake_dump(fa, m, rep);
		snprintf(why, sizeof(why), "fake dump: %s", strerror(-ret));
	}
	rep->has_error = 1;
	rep->error = ret;
	if (ret)
		rep->message = strdup(why);
	return rep;
}

static void on_msg(struct rpc_conn *c, const Crjob__Msg *m, const struct rpc_peer *from,
		   void *arg)
{
	struct fport *p = arg;
	struct fa *fa = p->fa;
	struct pending *pd;
	struct timeval tv;

	if (m->kind != CRJOB__KIND__REQUEST)
		return;
	log_req(p, m, from);
	if (fa->drop_at && !strcmp(fa->drop_at, op_lc(m->op)))
		return;
	pd = calloc(1, sizeof(*pd));
	if (!pd)
		return;
	pd->fa = fa;
	pd->c = c;
	pd->reply = make_reply(fa, m);
	pd->ev = evtimer_new(fa->base, send_reply, pd);
	if (!pd->reply || !pd->ev) {
		fprintf(stderr, "fakeagent: out of memory\n");
		exit(1);
	}
	pd->next = fa->pending;
	fa->pending = pd;
	if (fa->delay_ms && (!fa->delay_at || !strcmp(fa->delay_at, op_lc(m->op)))) {
		tv.tv_sec = fa->delay_ms / 1000;
		tv.tv_usec = fa->delay_ms % 1000 * 1000;
		evtimer_add(pd->ev, &tv);
	} else {
		send_reply(-1, 0, pd);
	}
}

static void on_close(struct rpc_conn *c, int err, void *arg)
{
	struct fport *p = arg;
	struct pending *pd;

	for (pd = p->fa->pending; pd; pd = pd->next)
		if (pd->c == c)
			pd->c = NULL;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

static int write_file(const char *path, const char *text)
{
	char tmp[4200];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) || rename(tmp, path)) {
		fprintf(stderr, "fakeagent: can't write %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "ports", required_argument, NULL, 'p' },
		{ "count", required_argument, NULL, 'n' },
		{ "store", required_argument, NULL, 'S' },
		{ "munge-socket", required_argument, NULL, 'm' },
		{ "fail-at", required_argument, NULL, 'f' },
		{ "drop-at", required_argument, NULL, 'd' },
		{ "delay-ms", required_argument, NULL, 'D' },
		{ "delay-at", required_argument, NULL, 'A' },
		{ "log", required_argument, NULL, 'L' },
		{ "ready", required_argument, NULL, 'r' },
		{ "pidfile", required_argument, NULL, 'P' },
		{ 0 }
	};
	const char *listen[4096], *munge = NULL, *ready = NULL, *pidfile = NULL;
	int nlisten = 0, base_port = 0, count = 0, c, i, ret;
	struct fa fa = { 0 };
	struct fport *ports;
	struct event *sig;
	char *text, hp[64];
	size_t off = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l': if (nlisten < 4096) listen[nlisten++] = optarg; break;
		case 'p': base_port = atoi(optarg); break;
		case 'n': count = atoi(optarg); break;
		case 'S': fa.store_dir = optarg; break;
		case 'm': munge = optarg; break;
		case 'f': fa.fail_at = optarg; break;
		case 'd': fa.drop_at = optarg; break;
		case 'D': fa.delay_ms = atoi(optarg); break;
		case 'A': fa.delay_at = optarg; break;
		case 'L':
			fa.log = fopen(optarg, "a");
			if (!fa.log)
				return 1;
			break;
		case 'r': ready = optarg; break;
		case 'P': pidfile = optarg; break;
		default: return 2;
		}
	}
	if (count <= 0 && !nlisten)
		count = 1;
	if (count < 0 || count > 4096)
		return 2;
	log_init(LOG_WARN, STDERR_FILENO);
	signal(SIGPIPE, SIG_IGN);
	fa.base = event_base_new();
	if (!fa.base || rpc_new(munge, 0, &fa.rpc))
		return 1;
	ports = calloc(nlisten + count, sizeof(*ports));
	text = calloc(nlisten + count + 1, 16);
	if (!ports || !text)
		return 1;
	for (i = 0; i < nlisten + count; i++) {
		if (i < nlisten)
			snprintf(hp, sizeof(hp), "%s", listen[i]);
		else
			snprintf(hp, sizeof(hp), "127.0.0.1:%d",
				 base_port ? base_port + i - nlisten : 0);
		ports[i].fa = &fa;
		ret = rpc_listen(fa.rpc, fa.base, hp, on_msg, on_close, &ports[i], &ports[i].l);
		if (ret) {
			fprintf(stderr, "fakeagent: can't listen on %s: %s\n", hp, strerror(-ret));
			return 1;
		}
		ports[i].port = rpc_listener_port(ports[i].l);
		off += sprintf(text + off, "%d\n", ports[i].port);
	}
	sig = evsignal_new(fa.base, SIGTERM, on_signal, fa.base);
	evsignal_add(sig, NULL);
	if (pidfile) {
		char pb[32];

		snprintf(pb, sizeof(pb), "%d\n", getpid());
		if (write_file(pidfile, pb))
			return 1;
	}
	if (ready && write_file(ready, text))
		return 1;
	event_base_dispatch(fa.base);
	for (i = 0; i < nlisten + count; i++)
		rpc_listener_free(ports[i].l);
	event_free(sig);
	if (fa.store)
		store_close(fa.store);
	rpc_free(fa.rpc);
	event_base_free(fa.base);
	free(ports);
	free(text);
	return 0;
}
