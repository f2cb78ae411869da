/* Small helpers: time, message copies, node specs, node sets. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coord.h"
#include "log.h"

double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * A deep copy of any protobuf-c message, by packing and unpacking it: the
 * copy is then freed like any unpacked message (protobuf_c_message_free_unpacked).
 */
void *msg_dup(const void *m)
{
	const ProtobufCMessage *pm = m;
	size_t len = protobuf_c_message_get_packed_size(pm);
	uint8_t *buf = malloc(len ? len : 1);
	ProtobufCMessage *copy;

	if (!buf)
		return NULL;
	protobuf_c_message_pack(pm, buf);
	copy = protobuf_c_message_unpack(pm->descriptor, NULL, len, buf);
	free(buf);
	return copy;
}

Crjob__Node *node_new(const char *name, const char *agent, const char *ip)
{
	Crjob__Node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	crjob__node__init(n);
	n->name = strdup(name);
	n->agent = strdup(agent);
	n->ip = strdup(ip);
	if (!n->name || !n->agent || !n->ip) {
		crjob__node__free_unpacked(n, NULL);
		return NULL;
	}
	return n;
}

int node_add_tree(Crjob__Node *n, uint32_t pid, const char *writer)
{
	Crjob__Tree **v = realloc(n->trees, (n->n_trees + 1) * sizeof(*v));
	Crjob__Tree *t;

	if (!v)
		return -ENOMEM;
	n->trees = v;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	crjob__tree__init(t);
	t->pid = pid;
	if (writer && !(t->writer = strdup(writer))) {
		free(t);
		return -ENOMEM;
	}
	v[n->n_trees++] = t;
	return 0;
}

void writer_name(char *buf, size_t len, const char *node, uint32_t pid)
{
	snprintf(buf, len, "%s-%u", node, pid);
}

/* NAME,AGENT_HOST:PORT,IP[,PID[+PID...]] */
int node_parse_spec(const char *spec, Crjob__Node **out)
{
	char *s = strdup(spec), *f[4] = { 0 }, *p, *save = NULL;
	Crjob__Node *n = NULL;
	int i = 0, ret = -EINVAL;

	if (!s)
		return -ENOMEM;
	for (p = strtok_r(s, ",", &save); p && i < 4; p = strtok_r(NULL, ",", &save))
		f[i++] = p;
	if (i < 3 || p || !strchr(f[1], ':'))
		goto out;
	n = node_new(f[0], f[1], f[2]);
	if (!n) {
		ret = -ENOMEM;
		goto out;
	}
	for (p = f[3] ? strtok_r(f[3], "+", &save) : NULL; p; p = strtok_r(NULL, "+", &save)) {
		char *end, w[256];
		unsigned long pid = strtoul(p, &end, 10);

		if (*end || !pid || pid > 0x7fffffff)
			goto out;
		writer_name(w, sizeof(w), n->name, pid);
		if (node_add_tree(n, pid, w)) {
			ret = -ENOMEM;
			goto out;
		}
	}
	*out = n;
	n = NULL;
	ret = 0;
out:
	if (n)
		crjob__node__free_unpacked(n, NULL);
	free(s);
	return ret;
}

/* a copy of n, appended (each cnode allocated alone: connections point at it) */
int nodeset_add(struct coord *co, struct nodeset *ns, const Crjob__Node *n)
{
	struct cnode **v = realloc(ns->v, (ns->n + 1) * sizeof(*v));
	struct cnode *cn;

	if (!v)
		return -ENOMEM;
	ns->v = v;
	cn = calloc(1, sizeof(*cn));
	if (!cn)
		return -ENOMEM;
	cn->co = co;
	cn->n = msg_dup(n);
	if (!cn->n) {
		free(cn);
		return -ENOMEM;
	}
	v[ns->n++] = cn;
	return 0;
}

Crjob__Generation *hist_find(struct coord *co, uint64_t gen)
{
	int i;

	for (i = 0; i < co->nhist; i++)
		if (co->hist[i]->gen == gen)
			return co->hist[i];
	return NULL;
}
