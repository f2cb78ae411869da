/*
 * Configuration: `key = value` lines of the config file (default
 * /etc/crjob/agent.conf, which may be missing), then the command line, which
 * wins.  Keys and options have the same names (allow_users, --allow-users).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

enum {
	K_LISTEN,
	K_STORE,
	K_CRD,
	K_ALLOW,
	K_MUNGE,
	K_MAXPAR,
	K_LOG,
	K_PIDFILE,
	K_NAME,
	K_HOLD,
	K_CAPTURE,
	K_CRD_LOGS,
	K_CONFIG,
	K_NR,
};

static const char *const keys[K_NR] = {
	"listen", "store", "crd", "allow_users", "munge_socket", "max_parallel", "log",
	"pidfile", "name", "hold_timeout", "capture", "crd_logs", "config",
};

static const struct option long_opts[] = {
	{ "listen", required_argument, NULL, K_LISTEN },
	{ "store", required_argument, NULL, K_STORE },
	{ "crd", required_argument, NULL, K_CRD },
	{ "allow-users", required_argument, NULL, K_ALLOW },
	{ "munge-socket", required_argument, NULL, K_MUNGE },
	{ "max-parallel", required_argument, NULL, K_MAXPAR },
	{ "log", required_argument, NULL, K_LOG },
	{ "pidfile", required_argument, NULL, K_PIDFILE },
	{ "name", required_argument, NULL, K_NAME },
	{ "hold-timeout", required_argument, NULL, K_HOLD },
	{ "capture", required_argument, NULL, K_CAPTURE },
	{ "crd-logs", required_argument, NULL, K_CRD_LOGS },
	{ "config", required_argument, NULL, K_CONFIG },
	{ "help", no_argument, NULL, 'h' },
	{ }
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: crjob-agent [--config FILE] [--listen HOST:PORT] [--store DIR]\n"
		"         [--crd PATH] [--allow-users U1,U2] [--munge-socket PATH]\n"
		"         [--max-parallel N] [--log FILE] [--pidfile FILE] [--name NODE]\n"
		"         [--hold-timeout SECONDS] [--crd-logs DIR] [--capture DIR[:DIR...]]\n"
		"The node agent of crjob (docs/distributed.md).  The config file (default\n"
		AGENT_DEFAULT_CONF ") has `key = value` lines with the same names\n"
		"(listen, store, crd, allow_users, munge_socket, max_parallel, log, pidfile, name,\n"
		"hold_timeout, crd_logs, capture).  capture: node-local directories (Slurm's\n"
		"spool, TmpFS) whose files the trees use are copied into the images and\n"
		"recreated on restore where missing (crd --capture-path).\n");
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* "DIR:DIR" -> capture directories (crd dump --capture-path) */
static int parse_capture(const char *list, struct agent_conf *c)
{
	char *dup = strdup(list), *tok, *save = NULL;

	if (!dup)
		return -ENOMEM;
	while (c->n_capture)
		free(c->capture[--c->n_capture]);
	for (tok = strtok_r(dup, ":, ", &save); tok; tok = strtok_r(NULL, ":, ", &save)) {
		if (c->n_capture == AGENT_MAX_CAPTURE || tok[0] != '/') {
			fprintf(stderr, "crjob-agent: capture: at most %d absolute directories, "
				"not '%s'\n", AGENT_MAX_CAPTURE, tok);
			free(dup);
			return -EINVAL;
		}
		c->capture[c->n_capture] = strdup(tok);
		if (!c->capture[c->n_capture++]) {
			free(dup);
			return -ENOMEM;
		}
	}
	free(dup);
	return 0;
}

/* "alice,1001,bob" -> uids */
static int parse_allow(const char *list, struct agent_conf *c)
{
	char *dup = strdup(list), *tok, *save = NULL, *end;
	struct passwd *pw;
	long uid;

	if (!dup)
		return -ENOMEM;
	c->n_allow = 0;
	for (tok = strtok_r(dup, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		if (c->n_allow == AGENT_MAX_ALLOW) {
			fprintf(stderr, "crjob-agent: allow_users: more than %d users\n",
				AGENT_MAX_ALLOW);
			free(dup);
			return -E2BIG;
		}
		uid = strtol(tok, &end, 10);
		if (*end || end == tok) {
			pw = getpwnam(tok);
			if (!pw) {
				fprintf(stderr, "crjob-agent: allow_users: no user '%s'\n", tok);
				free(dup);
				return -ENOENT;
			}
			uid = pw->pw_uid;
		}
		c->allow[c->n_allow++] = uid;
	}
	free(dup);
	return 0;
}

static int set_key(struct agent_conf *c, int k, const char *val, const char *where)
{
	char **str[K_NR] = {
		[K_LISTEN] = &c->listen, [K_STORE] = &c->store, [K_CRD] = &c->crd,
		[K_MUNGE] = &c->munge_socket, [K_LOG] = &c->log, [K_PIDFILE] = &c->pidfile,
		[K_NAME] = &c->name, [K_CRD_LOGS] = &c->crd_logs,
	};
	char *end;

	if (k == K_ALLOW)
		return parse_allow(val, c);
	if (k == K_CAPTURE)
		return parse_capture(val, c);
	if (k == K_MAXPAR) {
		c->max_parallel = strtol(val, &end, 10);
		if (*end || end == val || c->max_parallel < 1 || c->max_parallel > 1024) {
			fprintf(stderr, "crjob-agent: %s: max_parallel must be 1..1024, not '%s'\n",
				where, val);
			return -EINVAL;
		}
		return 0;
	}
	if (k == K_HOLD) {
		c->hold_timeout_s = strtol(val, &end, 10);
		if (*end || end == val || c->hold_timeout_s < 0) {
			fprintf(stderr, "crjob-agent: %s: hold_timeout is seconds (0: never), "
				"not '%s'\n", where, val);
			return -EINVAL;
		}
		return 0;
	}
	if (!str[k])
		return 0;
	free(*str[k]);
	*str[k] = strdup(val);
	return *str[k] ? 0 : -ENOMEM;
}

static int load_file(struct agent_conf *c, const char *path, bool must_exist)
{
	char line[1024], where[300], *eq, *k, *v;
	int lineno = 0, i, ret = 0;
	FILE *f = fopen(path, "re");

	if (!f) {
		if (errno == ENOENT && !must_exist)
			return 0;
		fprintf(stderr, "crjob-agent: config %s: %m\n", path);
		return -errno;
	}
	while (!ret && fgets(line, sizeof(line), f)) {
		lineno++;
		k = trim(line);
		if (!*k || *k == '#')
			continue;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		eq = strchr(k, '=');
		if (!eq) {
			fprintf(stderr, "crjob-agent: %s: not `key = value`\n", where);
			ret = -EINVAL;
			break;
		}
		*eq = '\0';
		k = trim(k);
		v = trim(eq + 1);
		for (i = 0; i < K_CONFIG; i++)
			if (!strcmp(k, keys[i]))
				break;
		if (i == K_CONFIG) {
			fprintf(stderr, "crjob-agent: %s: unknown key '%s'\n", where, k);
			ret = -EINVAL;
			break;
		}
		ret = set_key(c, i, v, where);
	}
	fclose(f);
	return ret;
}

int conf_load(int argc, char **argv, struct agent_conf *c)
{
	const char *cli[K_NR] = { };
	int opt, i, ret;

	memset(c, 0, sizeof(*c));
	c->max_parallel = 4;
	c->hold_timeout_s = 600;
	while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		if (opt == 'h') {
			usage(stdout);
			exit(0);
		}
		if (opt < 0 || opt >= K_NR) {
			usage(stderr);
			return -EINVAL;
		}
		cli[opt] = optarg;
	}
	if (optind < argc) {
		fprintf(stderr, "crjob-agent: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return -EINVAL;
	}
	ret = load_file(c, cli[K_CONFIG] ?: AGENT_DEFAULT_CONF, cli[K_CONFIG] != NULL);
	for (i = 0; !ret && i < K_CONFIG; i++)
		if (cli[i])
			ret = set_key(c, i, cli[i], "command line");
	if (!ret && !c->listen)
		ret = set_key(c, K_LISTEN, "0.0.0.0:7710", "default");
	return ret;
}

void conf_free(struct agent_conf *c)
{
	free(c->listen);
	free(c->store);
	free(c->crd);
	free(c->munge_socket);
	free(c->log);
	free(c->pidfile);
	free(c->name);
	free(c->crd_logs);
	while (c->n_capture)
		free(c->capture[--c->n_capture]);
}
