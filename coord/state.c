/*
 * What outlives the coordinator.  Each committed generation G carries the
 * writer `coord` with two blobs: `job`, the packed Crjob__Status (nodes and
 * their trees with writer names, owner, interval, keep, last_gen = G), and
 * `history`, a packed Crjob__Msg whose gens hold what the store does not
 * know of each generation (frozen and total times, stopped).  G's own times
 * are those measured up to its commit: the thaw comes after.
 * STORE/coord/JOBID tells crjob where the coordinator listens.
 *
 * What changes between two checkpoints (nodes after a restart or REGISTER,
 * interval, keep, a stop) is in STORE/coord/.JOBID.state, a packed Status
 * replaced atomically: a coordinator started again prefers it to the last
 * generation's unless that generation is newer.  SHUTDOWN (the job is over)
 * removes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coord.h"
#include "log.h"
#include "store.h"

void state_set_error(struct coord *co, const char *node, const char *fmt, ...)
{
	char why[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (node)
		snprintf(co->last_error, sizeof(co->last_error), "node %s: %s", node, why);
	else
		snprintf(co->last_error, sizeof(co->last_error), "%s", why);
	pr_err("job %s: %s\n", co->job, co->last_error);
}

/* A Status of the coordinator; its nodes are borrowed: free with free(st->nodes), free(st). */
Crjob__Status *state_status(struct coord *co)
{
	Crjob__Status *st = calloc(1, sizeof(*st));
	int i;

	if (!st)
		return NULL;
	crjob__status__init(st);
	st->nodes = calloc(co->nodes.n + 1, sizeof(*st->nodes));
	if (!st->nodes) {
		free(st);
		return NULL;
	}
	st->job = (char *)co->job;
	st->phase = (char *)co->phase;
	st->has_last_gen = 1;
	st->last_gen = co->last_gen;
	st->has_interval_s = 1;
	st->interval_s = co->interval_s;
	st->has_keep = 1;
	st->keep = co->keep;
	st->has_owner = 1;
	st->owner = co->owner;
	if (co->last_error[0])
		st->last_error = co->last_error;
	for (i = 0; i < co->nodes.n; i++)
		st->nodes[i] = co->nodes.v[i]->n;
	st->n_nodes = co->nodes.n;
	return st;
}

static int put_msg(struct store_writer *w, const char *name, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len + 1);
	int ret;

	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(m, buf);
	ret = store_put_blob(w, name, buf, len);
	free(buf);
	return ret;
}

/*
 * Writer `coord` of generation gen, begun before its FREEZE: the coordinator
 * (the job's owner) then creates gen-G.partial and may write in it, where
 * the agents' crd run as root.  It only dedups against its own earlier
 * writers (tiny), not against every node's.
 */
int state_begin_gen(struct coord *co, uint64_t gen, struct store_writer **w)
{
	char path[4400];

	/* the job's directory is its owner's, 0700 (the agents check and keep that) */
	snprintf(path, sizeof(path), "%s/jobs/%s", co->store_dir, co->job);
	if (mkdir(path, 0700) && errno != EEXIST) {
		int ret = -errno;

		pr_perror("job %s: can't create %s%s", co->job, path, ret != -EACCES ? "" :
			  " (a coordinator run by a user needs STORE/jobs mode 1777)");
		return ret;
	}
	return store_writer_begin(co->store, co->job, gen, "coord", STORE_DEDUP_NODE, w);
}

/* the blobs of writer w (state_begin_gen), finished before the commit; w is freed */
int state_save_gen(struct coord *co, struct store_writer *w, uint64_t gen, bool stopped)
{
	Crjob__Msg hist = CRJOB__MSG__INIT;
	Crjob__Status *st;
	int ret;

	st = state_status(co);
	if (!st) {
		store_writer_abort(w);
		return -ENOMEM;
	}
	st->phase = stopped ? "stopped" : "idle";
	st->last_gen = gen;
	st->last_error = NULL;
	hist.kind = CRJOB__KIND__REPLY;
	hist.op = CRJOB__OP__HISTORY;
	hist.job = (char *)co->job;
	hist.gens = co->hist;
	hist.n_gens = co->nhist;
	ret = put_msg(w, "job", &st->base) ?: put_msg(w, "history", &hist.base);
	free(st->nodes);
	free(st);
	if (ret) {
		store_writer_abort(w);
		return ret;
	}
	return store_writer_finish(w);
}

static void load_history(struct coord *co, struct store_reader *r)
{
	Crjob__Msg *m;
	size_t len, i;
	void *buf;

	if (store_get_blob(r, "history", &buf, &len))
		return;
	m = crjob__msg__unpack(NULL, len, buf);
	free(buf);
	if (!m) {
		pr_warn("job %s: generation %llu: unparsable history blob, ignored\n", co->job,
			(unsigned long long)store_reader_gen(r));
		return;
	}
	co->hist = calloc(m->n_gens + 1, sizeof(*co->hist));
	for (i = 0; co->hist && i < m->n_gens; i++)
		if ((co->hist[co->nhist] = msg_dup(m->gens[i])))
			co->nhist++;
	crjob__msg__free_unpacked(m, NULL);
}

/* nodes, interval and keep of the stored job where the command line did not set them */
static int apply_status(struct coord *co, Crjob__Status *st, bool nodes_given,
			bool interval_given, bool keep_given)
{
	size_t i;
	int ret = 0;

	if (!nodes_given)
		nodeset_free(co, &co->nodes);
	for (i = 0; !nodes_given && !ret && i < st->n_nodes; i++)
		ret = nodeset_add(co, &co->nodes, st->nodes[i]);
	co->phase = strcmp(st->phase, "stopped") ? "idle" : "stopped";
	if (!interval_given && st->has_interval_s)
		co->interval_s = st->interval_s;
	if (!keep_given && st->has_keep)
		co->keep = st->keep;
	if (st->has_owner && st->owner != co->owner)
		pr_warn("job %s: stored owner %u, coordinator owner %u\n", co->job, st->owner,
			co->owner);
	return ret;
}

static int load_status(struct coord *co, struct store_reader *r, bool nodes_given,
		       bool interval_given, bool keep_given)
{
	Crjob__Status *st;
	size_t len;
	void *buf;
	int ret;

	ret = store_get_blob(r, "job", &buf, &len);
	if (ret)
		return ret;
	st = crjob__status__unpack(NULL, len, buf);
	free(buf);
	if (!st) {
		pr_err("job %s: generation %llu: unparsable job blob\n", co->job,
		       (unsigned long long)store_reader_gen(r));
		return -EBADMSG;
	}
	ret = apply_status(co, st, nodes_given, interval_given, keep_given);
	crjob__status__free_unpacked(st, NULL);
	return ret;
}

static void layout_path(struct coord *co, char *buf, size_t len)
{
	snprintf(buf, len, "%s/coord/.%s.state", co->store_dir, co->job);
}

/* the layout file, if no older than the last generation */
static int load_layout(struct coord *co, bool nodes_given, bool interval_given, bool keep_given)
{
	Crjob__Status *st;
	char path[4400];
	uint8_t *buf;
	long len;
	FILE *f;
	int ret = 0;

	layout_path(co, path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return 0;
	buf = malloc(1 << 24);
	len = buf ? (long)fread(buf, 1, 1 << 24, f) : -1;
	fclose(f);
	st = len > 0 ? crjob__status__unpack(NULL, len, buf) : NULL;
	free(buf);
	if (!st) {
		pr_warn("job %s: %s unreadable, ignored\n", co->job, path);
		return 0;
	}
	if (st->last_gen >= co->last_gen) {
		ret = apply_status(co, st, nodes_given, interval_given, keep_given);
		pr_info("job %s: layout of %s: %d nodes, phase %s\n", co->job, path, co->nodes.n,
			co->phase);
	}
	crjob__status__free_unpacked(st, NULL);
	return ret;
}

void state_save_layout(struct coord *co)
{
	char path[4400], tmp[4500];
	Crjob__Status *st = state_status(co);
	uint8_t *buf = NULL;
	size_t len;
	int fd, ok = 0;

	if (!st)
		return;
	st->last_error = NULL;
	st->phase = (char *)(strcmp(co->phase, "stopped") ? "idle" : "stopped");
	len = crjob__status__get_packed_size(st);
	buf = malloc(len + 1);
	layout_path(co, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, getpid());
	if (buf) {
		crjob__status__pack(st, buf);
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		ok = fd >= 0 && write(fd, buf, len) == (ssize_t)len && !fsync(fd);
		if (fd >= 0)
			close(fd);
		ok = ok && !rename(tmp, path);
	}
	if (!ok) {
		pr_perror("job %s: can't save the layout in %s", co->job, path);
		unlink(tmp);
	}
	free(buf);
	state_status_free(st);
}

void state_remove_layout(struct coord *co)
{
	char path[4400];

	layout_path(co, path, sizeof(path));
	unlink(path);
}

/*
 * A partial generation at start is a checkpoint a previous coordinator of
 * the job did not finish (killed): nothing will ever commit it.
 */
static void drop_partials(struct coord *co)
{
	struct store_gc_stats st;

	if (!store_gc(co->store, co->job, 0, 0, STORE_GC_FORCE, &st) && st.partials)
		pr_info("job %s: removed %d unfinished generations (%llu bytes)\n", co->job,
			st.partials, (unsigned long long)st.bytes);
}

int state_load(struct coord *co, bool nodes_given, bool interval_given, bool keep_given)
{
	struct store_gen_info *gi;
	struct store_reader *r;
	char path[4200];
	struct stat sb;
	int n, ret;

	snprintf(path, sizeof(path), "%s/jobs/%s", co->store_dir, co->job);
	if (stat(path, &sb))
		return load_layout(co, nodes_given, interval_given, keep_given);
	drop_partials(co);
	ret = store_list_gens(co->store, co->job, &gi, &n);
	if (ret)
		return ret;
	co->last_gen = n ? gi[n - 1].gen : 0;
	free(gi);
	if (!co->last_gen)
		return load_layout(co, nodes_given, interval_given, keep_given);
	ret = store_reader_open_node(co->store, co->job, co->last_gen, "coord", &r);
	if (ret) {
		pr_warn("job %s: generation %llu has no coordinator state: nodes from the "
			"command line only\n", co->job, (unsigned long long)co->last_gen);
		return load_layout(co, nodes_given, interval_given, keep_given);
	}
	ret = load_status(co, r, nodes_given, interval_given, keep_given);
	if (!ret)
		load_history(co, r);
	store_reader_close(r);
	if (!ret)
		ret = load_layout(co, nodes_given, interval_given, keep_given);
	if (!ret)
		pr_info("job %s: loaded generation %llu: %d nodes, %d history records\n",
			co->job, (unsigned long long)co->last_gen, co->nodes.n, co->nhist);
	return ret;
}

/* STORE/coord/JOBID = "HOST:PORT PID\n", replaced atomically */
int state_write_coord_file(struct coord *co, int port)
{
	char dir[4096], tmp[4500], host[256], line[400];
	const char *colon = strrchr(co->listen, ':');
	int fd, len, ret = 0;

	snprintf(dir, sizeof(dir), "%s/coord", co->store_dir);
	/* coordinators of all users register here, as in /tmp */
	if (mkdir(dir, 01777) == 0)
		chmod(dir, 01777);
	else if (errno != EEXIST) {
		ret = -errno;
		pr_perror("job %s: can't create %s", co->job, dir);
		return ret;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - co->listen), co->listen);
	if (!strcmp(host, "0.0.0.0") || !host[0])
		gethostname(host, sizeof(host));
	len = snprintf(line, sizeof(line), "%s:%d %d\n", host, port, getpid());
	snprintf(co->coord_file, sizeof(co->coord_file), "%s/%s", dir, co->job);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", co->coord_file, getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || fchmod(fd, 0644) || write(fd, line, len) != len || fsync(fd)) {
		ret = -errno;
		pr_perror("job %s: can't write %s", co->job, tmp);
	}
	if (fd >= 0)
		close(fd);
	if (!ret && rename(tmp, co->coord_file)) {
		ret = -errno;
		pr_perror("job %s: can't rename %s to %s", co->job, tmp, co->coord_file);
	}
	if (ret) {
		unlink(tmp);
		co->coord_file[0] = '\0';
	}
	return ret;
}

/* only ours: a newer coordinator of the job may have replaced it */
void state_remove_coord_file(struct coord *co)
{
	char buf[400], *sp;
	int fd, n;

	if (!co->coord_file[0])
		return;
	fd = open(co->coord_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	sp = strchr(buf, ' ');
	if (sp && atoi(sp + 1) == getpid())
		unlink(co->coord_file);
}

void state_status_free(Crjob__Status *st)
{
	if (!st)
		return;
	free(st->nodes);
	free(st);
}
