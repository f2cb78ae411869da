/* crjob-coord: options, start-up, the event loop, clean exit. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord.h"
#include "log.h"
#include "store.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: crjob-coord --job JOBID --store DIR [--listen HOST:PORT]\n"
		"         [--munge-socket PATH] [--owner UID] [--node SPEC]...\n"
		"         [--interval SECONDS]"
		"         [--keep K] [--freeze-timeout MS] [--log FILE] [--pidfile FILE]\n"
		"         [--io-threads N] [-v]\n"
		"  SPEC = NAME,AGENT_HOST:PORT,IP[,PID[+PID...]]\n");
}

struct opts {
	const char *log, *pidfile;
	bool nodes_given, interval_given, keep_given;
	int verbose;
};

enum { OPT_JOB = 256, OPT_STORE, OPT_LISTEN, OPT_MUNGE, OPT_OWNER, OPT_NODE, OPT_INTERVAL,
       OPT_KEEP, OPT_FREEZE_TIMEOUT, OPT_LOG, OPT_PIDFILE, OPT_IO_THREADS };

static const struct option long_opts[] = {
	{ "job", required_argument, NULL, OPT_JOB },
	{ "store", required_argument, NULL, OPT_STORE },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "munge-socket", required_argument, NULL, OPT_MUNGE },
	{ "owner", required_argument, NULL, OPT_OWNER },
	{ "node", required_argument, NULL, OPT_NODE },
	{ "interval", required_argument, NULL, OPT_INTERVAL },
	{ "keep", required_argument, NULL, OPT_KEEP },
	{ "freeze-timeout", required_argument, NULL, OPT_FREEZE_TIMEOUT },
	{ "log", required_argument, NULL, OPT_LOG },
	{ "pidfile", required_argument, NULL, OPT_PIDFILE },
	{ "io-threads", required_argument, NULL, OPT_IO_THREADS },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 }
};

static int parse_uint(const char *s, const char *what, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || !*s || v > UINT32_MAX) {
		fprintf(stderr, "crjob-coord: bad %s '%s'\n", what, s);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static int add_node_spec(struct coord *co, const char *spec)
{
	Crjob__Node *n;
	int ret = node_parse_spec(spec, &n);

	if (ret) {
		fprintf(stderr, "crjob-coord: bad --node '%s' "
			"(want NAME,HOST:PORT,IP[,PID[+PID]])\n", spec);
		return ret;
	}
	ret = nodeset_add(co, &co->nodes, n);
	crjob__node__free_unpacked(n, NULL);
	return ret;
}

static int parse_opts(struct coord *co, struct opts *o, int argc, char **argv)
{
	uint32_t v;
	int c;

	while ((c = getopt_long(argc, argv, "vh", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_JOB: co->job = optarg; break;
		case OPT_STORE: co->store_dir = optarg; break;
		case OPT_LISTEN: co->listen = optarg; break;
		case OPT_MUNGE: co->munge_socket = optarg; break;
		case OPT_OWNER:
			if (parse_uint(optarg, "--owner", &v))
				return 2;
			co->owner = v;
			break;
		case OPT_NODE:
			if (add_node_spec(co, optarg))
				return 2;
			o->nodes_given = true;
			break;
		case OPT_INTERVAL:
			if (parse_uint(optarg, "--interval", &co->interval_s))
				return 2;
			o->interval_given = true;
			break;
		case OPT_KEEP:
			if (parse_uint(optarg, "--keep", &co->keep))
				return 2;
			o->keep_given = true;
			break;
		case OPT_FREEZE_TIMEOUT:
			if (parse_uint(optarg, "--freeze-timeout", &co->freeze_timeout_ms) ||
			    !co->freeze_timeout_ms)
				return 2;
			break;
		case OPT_IO_THREADS:
			if (parse_uint(optarg, "--io-threads", &v) || v > 64)
				return 2;
			co->io_threads = v;
			break;
		case OPT_LOG: o->log = optarg; break;
		case OPT_PIDFILE: o->pidfile = optarg; break;
		case 'v': o->verbose++; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || !co->job || !co->store_dir || !strrchr(co->listen, ':')) {
		usage(stderr);
		return 2;
	}
	return 0;
}

static int write_pidfile(const char *path)
{
	char buf[32];
	int fd, len, ret = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	len = snprintf(buf, sizeof(buf), "%d\n", getpid());
	if (fd < 0 || write(fd, buf, len) != len) {
		ret = -errno;
		fprintf(stderr, "crjob-coord: can't write %s: %s\n", path, strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

/*
 * The first signal lets the operation in progress end cleanly (ABORT or
 * KILL to its agents, which do not give up on their own), the second one
 * does not wait.
 */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct coord *co = arg;
	char why[100];

	if (!co->op || co->exiting) {
		pr_info("job %s: signal %d, exiting\n", co->job, (int)sig);
		event_base_loopexit(co->base, NULL);
		return;
	}
	co->exiting = true;
	snprintf(why, sizeof(why), "coordinator: %s given up on signal %d", co->op->name,
		 (int)sig);
	co->op->cancel(co, why);
}

void op_ended(struct coord *co)
{
	/* time for the replies to leave */
	struct timeval tv = { 0, 100 * 1000 };

	if (co->exiting)
		event_base_loopexit(co->base, &tv);
}

static int open_log(const struct opts *o)
{
	int fd = STDERR_FILENO;

	if (o->log) {
		fd = open(o->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0) {
			fprintf(stderr, "crjob-coord: can't open %s: %s\n", o->log,
				strerror(errno));
			return -errno;
		}
	}
	log_init(LOG_INFO + (o->verbose > 0), fd);
	return 0;
}

static int start(struct coord *co, struct opts *o)
{
	int ret;

	ret = store_open(co->store_dir, &co->store) ?:
	      state_load(co, o->nodes_given, o->interval_given, o->keep_given) ?:
	      rpc_new(co->munge_socket, 0, &co->rpc);
	if (ret)
		return ret;
	co->base = event_base_new();
	if (!co->base)
		return -ENOMEM;
	ret = shards_init(co, co->io_threads) ?:
	      rpc_listen(co->rpc, co->base, co->listen, serve_msg, serve_close, co, &co->lst) ?:
	      state_write_coord_file(co, rpc_listener_port(co->lst)) ?:
	      periodic_init(co);
	if (!ret && o->pidfile)
		ret = write_pidfile(o->pidfile);
	if (!ret)
		pr_info("job %s: coordinator listening on port %d, owner %u, %d nodes, last "
			"generation %llu\n", co->job, rpc_listener_port(co->lst), co->owner,
			co->nodes.n, (unsigned long long)co->last_gen);
	return ret;
}

static void stop(struct coord *co, struct opts *o)
{
	int i;

	state_remove_coord_file(co);
	if (o->pidfile)
		unlink(o->pidfile);
	periodic_free(co);
	nodeset_free(co, &co->nodes);
	steps_free(co);
	nodeset_free(co, &co->lingering);
	shards_stop(co);
	if (co->lst)
		rpc_listener_free(co->lst);
	for (i = 0; i < co->nhist; i++)
		crjob__generation__free_unpacked(co->hist[i], NULL);
	free(co->hist);
	if (co->rpc)
		rpc_free(co->rpc);
	if (co->store)
		store_close(co->store);
	if (co->base)
		event_base_free(co->base);
}

int main(int argc, char **argv)
{
	struct coord co = {
		.listen = "0.0.0.0:0", .owner = getuid(), .freeze_timeout_ms = 10000,
		.io_threads = 4,
		.phase = "idle",
	};
	struct event *sig[2] = { 0 };
	struct opts o = { 0 };
	int ret;

	ret = parse_opts(&co, &o, argc, argv);
	if (ret)
		return ret;
	if (open_log(&o))
		return 1;
	signal(SIGPIPE, SIG_IGN);
	ret = start(&co, &o);
	if (!ret) {
		sig[0] = evsignal_new(co.base, SIGTERM, on_signal, &co);
		sig[1] = evsignal_new(co.base, SIGINT, on_signal, &co);
		if (!sig[0] || !sig[1] || evsignal_add(sig[0], NULL) || evsignal_add(sig[1], NULL))
			ret = -ENOMEM;
	}
	if (!ret)
		ret = event_base_dispatch(co.base) < 0 ? -EIO : 0;
	if (ret)
		pr_err("job %s: coordinator failed: %s\n", co.job, strerror(-ret));
	for (int i = 0; i < 2; i++)
		if (sig[i])
			event_free(sig[i]);
	stop(&co, &o);
	pr_info("job %s: coordinator exits\n", co.job);
	return ret ? 1 : 0;
}
