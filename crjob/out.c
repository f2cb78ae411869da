/* What crjob prints: human-readable text, or one JSON object with --json; the progress bar. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crjob.h"

void fmt_bytes(char *buf, size_t len, unsigned long long b)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = b;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", v, unit[i]);
}

static void json_node(const Crjob__Node *n)
{
	size_t j;

	printf("{\"name\": ");
	json_str(stdout, n->name);
	printf(", \"agent\": ");
	json_str(stdout, n->agent);
	printf(", \"ip\": ");
	json_str(stdout, n->ip);
	printf(", \"trees\": [");
	for (j = 0; j < n->n_trees; j++) {
		printf("%s{\"pid\": %u, \"writer\": ", j ? ", " : "", n->trees[j]->pid);
		json_str(stdout, n->trees[j]->writer);
		printf(", \"bytes\": %llu}", (unsigned long long)n->trees[j]->bytes);
	}
	printf("]}");
}

static void json_status(const Crjob__Status *st)
{
	size_t i;

	printf("{\"job\": ");
	json_str(stdout, st->job);
	printf(", \"phase\": ");
	json_str(stdout, st->phase);
	printf(", \"last_gen\": %llu, \"interval_s\": %u, \"keep\": %u, \"owner\": %u, "
	       "\"last_error\": ", (unsigned long long)st->last_gen, st->interval_s, st->keep,
	       st->owner);
	json_str(stdout, st->last_error);
	printf(", \"nodes\": [");
	for (i = 0; i < st->n_nodes; i++) {
		printf(i ? ", " : "");
		json_node(st->nodes[i]);
	}
	printf("]}");
}

void print_status(const struct cli *cli, const Crjob__Status *st, const char *text)
{
	char b[32];
	size_t i, j;

	if (cli->json) {
		printf("{\"ok\": true, \"message\": ");
		json_str(stdout, text);
		printf(", \"status\": ");
		json_status(st);
		printf("}\n");
		return;
	}
	printf("job %s: %s\n", st->job, text && text[0] ? text : st->phase);
	printf("  last generation: %llu\n", (unsigned long long)st->last_gen);
	printf("  interval: %us, keep: %u, owner uid: %u\n", st->interval_s, st->keep, st->owner);
	if (st->last_error)
		printf("  last error: %s\n", st->last_error);
	for (i = 0; i < st->n_nodes; i++) {
		const Crjob__Node *n = st->nodes[i];

		printf("  node %s  agent %s  ip %s\n", n->name, n->agent, n->ip);
		for (j = 0; j < n->n_trees; j++) {
			fmt_bytes(b, sizeof(b), n->trees[j]->bytes);
			printf("    tree %u  writer %s  %s\n", n->trees[j]->pid,
			       n->trees[j]->writer ? n->trees[j]->writer : "-", b);
		}
	}
}

static void json_gen(const Crjob__Generation *g)
{
	printf("{\"gen\": %llu, \"created\": %lld, \"logical\": %llu, \"stored\": %llu, "
	       "\"frozen_s\": %.6f, \"total_s\": %.6f, \"stopped\": %s}",
	       (unsigned long long)g->gen, (long long)g->created, (unsigned long long)g->logical,
	       (unsigned long long)g->stored, g->frozen_s, g->total_s,
	       g->stopped ? "true" : "false");
}

void print_gens(const struct cli *cli, const Crjob__Generation *const *g, size_t n)
{
	char created[32], lg[32], sd[32];
	size_t i;

	if (cli->json) {
		printf("{\"job\": ");
		json_str(stdout, cli->job);
		printf(", \"ok\": true, \"generations\": [");
		for (i = 0; i < n; i++) {
			printf(i ? ", " : "");
			json_gen(g[i]);
		}
		printf("]}\n");
		return;
	}
	printf("%-5s %-19s %10s %10s %9s %9s %s\n", "GEN", "CREATED", "LOGICAL", "STORED",
	       "FROZEN", "TOTAL", "");
	for (i = 0; i < n; i++) {
		time_t t = g[i]->created;
		struct tm tm;

		strftime(created, sizeof(created), "%F %T", localtime_r(&t, &tm));
		fmt_bytes(lg, sizeof(lg), g[i]->logical);
		fmt_bytes(sd, sizeof(sd), g[i]->stored);
		printf("%-5llu %-19s %10s %10s %8.3fs %8.3fs %s\n", (unsigned long long)g[i]->gen,
		       created, lg, sd, g[i]->frozen_s, g[i]->total_s,
		       g[i]->stopped ? "stopped" : "");
	}
}

/* the answer to CHECKPOINT or RESTART */
void print_result(const struct cli *cli, const Crjob__Msg *rep)
{
	if (!cli->json) {
		printf("job %s: %s\n", cli->job, rep->message ? rep->message : "done");
		return;
	}
	printf("{\"job\": ");
	json_str(stdout, cli->job);
	printf(", \"ok\": true, \"message\": ");
	json_str(stdout, rep->message);
	if (rep->n_gens) {
		printf(", \"generation\": ");
		json_gen(rep->gens[0]);
	}
	if (rep->status) {
		printf(", \"status\": ");
		json_status(rep->status);
	}
	printf("}\n");
}

static int bar_shown;

/* the bytes the trees wrote so far */
static unsigned long long status_bytes(const Crjob__Status *st)
{
	unsigned long long b = 0;
	size_t i, j;

	for (i = 0; st && i < st->n_nodes; i++)
		for (j = 0; j < st->nodes[i]->n_trees; j++)
			b += st->nodes[i]->trees[j]->bytes;
	return b;
}

/* EVENT message "PHASE DONE/TOTAL": a bar on stderr (a terminal), with the bytes written */
void progress_event(const Crjob__Msg *ev, void *arg)
{
	char phase[32], bytes[32];
	int done, total, i, w = 30, fill;

	if (!ev->message || sscanf(ev->message, "%31s %d/%d", phase, &done, &total) != 3 ||
	    total <= 0)
		return;
	fill = done * w / total;
	fmt_bytes(bytes, sizeof(bytes), status_bytes(ev->status));
	fprintf(stderr, "\r[");
	for (i = 0; i < w; i++)
		fputc(i < fill ? '#' : ' ', stderr);
	fprintf(stderr, "] %-10s %d/%d nodes %10s", phase, done, total, bytes);
	fflush(stderr);
	bar_shown = 1;
}

void progress_end(void)
{
	if (bar_shown)
		fprintf(stderr, "\r%72s\r", "");
	bar_shown = 0;
}

/* 30s, 10m, 2h, 1d or plain seconds; 0 turns periodic checkpoints off */
int parse_duration(const char *s, unsigned *seconds)
{
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 'd': v *= 24;	/* fall through */
	case 'h': v *= 60;	/* fall through */
	case 'm': v *= 60;	/* fall through */
	case 's': end++;	/* fall through */
	case '\0': break;
	default: return -EINVAL;
	}
	if (*end || v > 0xffffffffull)
		return -EINVAL;
	*seconds = v;
	return 0;
}
