/* crd: the command line front end of libcrd. */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crd.h"
#include "log.h"
#include "store.h"
#include "util.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage:\n"
		"  crd dump -t PID -D DIR [--leave-running] [--freezer=ptrace|cgroup]\n"
		"           [--capture-path DIR]... [--shell-job] [--keep-net-locked]\n"
		"           [--action-script FILE] [--external unix:INODE|unix:PATH]...\n"
		"  crd restore -D DIR [--detach] [--pidns] [--remap-ip OLD=NEW]... [--shell-job]\n"
		"           [--keep-net-locked] [--action-script FILE] [--owner UID]\n"
		"           [--capture-path DIR]...  (with --owner: captured files missing\n"
		"           there are recreated for the owner)\n"
		"  crd net-unlock PID [--netns PATH]\n"
		"  crd pre-dump -t PID --store DIR --job ID [--writer NAME] [--generation N]\n"
		"           [--compress]\n"
		"  crd store ls|show|verify|gc|rm ... --store DIR\n"
		"Images in a store (instead of -D DIR):\n"
		"  dump:    --store DIR --job ID [--writer NAME] [--generation N] [--compress]\n"
		"           [--no-commit]\n"
		"  restore: --store DIR --job ID [--writer NAME] [--generation N]\n"
		"  crd check\n"
		"  crd show FILE|DIR\n"
		"Common options:\n"
		"  -v, --verbose      more log output (repeat for debug)\n"
		"  -o, --log-file F   log to F instead of stderr\n"
		"  -h, --help         this text\n");
}

enum {
	OPT_LEAVE_RUNNING = 256,
	OPT_FREEZER,
	OPT_DETACH,
	OPT_PIDNS,
	OPT_CAPTURE,
	OPT_REMAP,
	OPT_SHELL_JOB,
	OPT_KEEP_LOCKED,
	OPT_NETNS,
	OPT_ACTION_SCRIPT,
	OPT_EXTERNAL,
	OPT_STORE,
	OPT_JOB,
	OPT_WRITER,
	OPT_GENERATION,
	OPT_COMPRESS,
	OPT_NO_COMMIT,
	OPT_OWNER,
};

static const struct option long_opts[] = {
	{ "tree", required_argument, NULL, 't' },
	{ "images-dir", required_argument, NULL, 'D' },
	{ "leave-running", no_argument, NULL, OPT_LEAVE_RUNNING },
	{ "freezer", required_argument, NULL, OPT_FREEZER },
	{ "detach", no_argument, NULL, OPT_DETACH },
	{ "pidns", no_argument, NULL, OPT_PIDNS },
	{ "capture-path", required_argument, NULL, OPT_CAPTURE },
	{ "remap-ip", required_argument, NULL, OPT_REMAP },
	{ "shell-job", no_argument, NULL, OPT_SHELL_JOB },
	{ "keep-net-locked", no_argument, NULL, OPT_KEEP_LOCKED },
	{ "netns", required_argument, NULL, OPT_NETNS },
	{ "action-script", required_argument, NULL, OPT_ACTION_SCRIPT },
	{ "external", required_argument, NULL, OPT_EXTERNAL },
	{ "store", required_argument, NULL, OPT_STORE },
	{ "job", required_argument, NULL, OPT_JOB },
	{ "writer", required_argument, NULL, OPT_WRITER },
	{ "generation", required_argument, NULL, OPT_GENERATION },
	{ "compress", no_argument, NULL, OPT_COMPRESS },
	{ "no-commit", no_argument, NULL, OPT_NO_COMMIT },
	{ "owner", required_argument, NULL, OPT_OWNER },
	{ "verbose", no_argument, NULL, 'v' },
	{ "log-file", required_argument, NULL, 'o' },
	{ "help", no_argument, NULL, 'h' },
	{ },
};

#define MAX_CAPTURE	32
#define MAX_REMAP	64
#define MAX_EXTERNAL	32

struct cli {
	struct ip_remap remap[MAX_REMAP];
	const char *capture[MAX_CAPTURE + 1];
	const char *external[MAX_EXTERNAL];
	struct dump_opts dump;
	struct restore_opts restore;
	int verbose;
	const char *log_file;
	const char *netns;
};

static int parse_opts(int argc, char **argv, struct cli *c)
{
	long val;
	int opt;

	while ((opt = getopt_long(argc, argv, "t:D:vo:h", long_opts, NULL)) != -1) {
		switch (opt) {
		case 't':
			if (parse_int(optarg, &val) || val <= 0) {
				fprintf(stderr, "crd: bad PID '%s'\n", optarg);
				return -1;
			}
			c->dump.pid = val;
			break;
		case 'D':
			c->dump.dir = c->restore.dir = optarg;
			break;
		case OPT_LEAVE_RUNNING:
			c->dump.leave_running = true;
			break;
		case OPT_FREEZER:
			if (!strcmp(optarg, "ptrace"))
				c->dump.freezer = FREEZER_PTRACE;
			else if (!strcmp(optarg, "cgroup"))
				c->dump.freezer = FREEZER_CGROUP;
			else {
				fprintf(stderr, "crd: --freezer takes ptrace or cgroup\n");
				return -1;
			}
			break;
		case OPT_DETACH:
			c->restore.detach = true;
			break;
		case OPT_PIDNS:
			c->restore.pidns = true;
			break;
		case OPT_CAPTURE:
			if (c->dump.n_capture == MAX_CAPTURE) {
				fprintf(stderr, "crd: at most %d --capture-path\n", MAX_CAPTURE);
				return -1;
			}
			c->capture[c->dump.n_capture++] = optarg;
			c->restore.n_capture = c->dump.n_capture;
			break;
		case OPT_SHELL_JOB:
			c->dump.shell_job = c->restore.shell_job = true;
			break;
		case OPT_KEEP_LOCKED:
			c->dump.keep_net_locked = c->restore.keep_net_locked = true;
			break;
		case OPT_STORE:
			c->dump.store = c->restore.store = optarg;
			break;
		case OPT_JOB:
			c->dump.job = c->restore.job = optarg;
			break;
		case OPT_WRITER:
			c->dump.writer = c->restore.writer = optarg;
			break;
		case OPT_GENERATION:
			if (parse_int(optarg, &val) || val <= 0) {
				fprintf(stderr, "crd: bad generation '%s'\n", optarg);
				return -1;
			}
			c->dump.generation = c->restore.generation = val;
			break;
		case OPT_COMPRESS:
			c->dump.compress = true;
			break;
		case OPT_NO_COMMIT:
			c->dump.no_commit = true;
			break;
		case OPT_EXTERNAL:
			if (strncmp(optarg, "unix:", 5) || !optarg[5] ||
			    c->dump.n_external == MAX_EXTERNAL) {
				fprintf(stderr, "crd: --external takes unix:INODE or unix:PATH "
					"(at most %d)\n", MAX_EXTERNAL);
				return -1;
			}
			c->external[c->dump.n_external++] = optarg;
			break;
		case OPT_ACTION_SCRIPT:
			c->dump.action_script = c->restore.action_script = optarg;
			break;
		case OPT_OWNER:
			if (parse_int(optarg, &val) || val < 0) {
				fprintf(stderr, "crd: bad --owner uid '%s'\n", optarg);
				return -1;
			}
			c->restore.owner = val;
			c->restore.has_owner = true;
			break;
		case OPT_NETNS:
			c->netns = optarg;
			break;
		case OPT_REMAP:
			if (c->restore.n_remap == MAX_REMAP ||
			    ip_remap_parse(optarg, &c->remap[c->restore.n_remap])) {
				fprintf(stderr, "crd: --remap-ip takes OLD=NEW addresses of one "
					"family (at most %d): '%s'\n", MAX_REMAP, optarg);
				return -1;
			}
			c->restore.n_remap++;
			break;
		case 'v':
			c->verbose++;
			break;
		case 'o':
			c->log_file = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	return 0;
}

static int open_log(const struct cli *c)
{
	int fd = STDERR_FILENO;

	if (c->log_file) {
		fd = open(c->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd < 0) {
			fprintf(stderr, "crd: can't open log file %s: %m\n", c->log_file);
			return -1;
		}
	}
	log_init(LOG_WARN + c->verbose, fd);
	return 0;
}

int main(int argc, char **argv)
{
	struct cli c = { };
	const char *cmd;
	int ret;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "store")) {
		log_init(LOG_WARN, STDERR_FILENO);
		return store_cli(argc - 2, argv + 2);
	}
	c.dump.capture = c.restore.capture = c.capture;
	c.dump.external = c.external;
	c.restore.remap = c.remap;
	if (parse_opts(argc - 1, argv + 1, &c) || open_log(&c))
		return 2;

	if (!strcmp(cmd, "dump")) {
		if (!c.dump.pid || (!c.dump.dir == !c.dump.store)) {
			fprintf(stderr, "crd dump: -t PID and one of -D DIR, --store DIR are "
				"required\n");
			return 2;
		}
		ret = cr_dump(&c.dump);
	} else if (!strcmp(cmd, "pre-dump")) {
		if (!c.dump.pid || !c.dump.store) {
			fprintf(stderr, "crd pre-dump: -t PID and --store DIR are required\n");
			return 2;
		}
		ret = cr_pre_dump(&c.dump);
	} else if (!strcmp(cmd, "restore")) {
		if (!c.restore.dir == !c.restore.store) {
			fprintf(stderr, "crd restore: one of -D DIR, --store DIR is required\n");
			return 2;
		}
		ret = cr_restore(&c.restore);
		if (ret >= 0)
			return ret;	/* the root's exit status, or 0 with --detach */
	} else if (!strcmp(cmd, "net-unlock")) {
		long pid;

		if (optind + 1 >= argc || parse_int(argv[optind + 1], &pid) || pid <= 0) {
			fprintf(stderr, "crd net-unlock: the PID of the tree's root is required\n");
			return 2;
		}
		ret = cr_net_unlock(pid, c.netns);
	} else if (!strcmp(cmd, "check")) {
		ret = cr_check();
	} else if (!strcmp(cmd, "show")) {
		if (optind + 1 >= argc) {
			fprintf(stderr, "crd show: FILE or DIR is required\n");
			return 2;
		}
		ret = cr_show(argv[optind + 1]);
	} else {
		fprintf(stderr, "crd: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}
	return ret ? 1 : 0;
}
