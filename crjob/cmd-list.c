/*
 * crjob list: the jobs of the store, those with a registered coordinator
 * (STORE/coord/JOBID) and those with generations, with their last one.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crjob.h"
#include "store.h"

struct job {
	char *name;
	char coord[300];
	int pid;
	bool alive;
	int gens;
	unsigned long long last;
};

static int job_cmp(const void *a, const void *b)
{
	return strcmp(((const struct job *)a)->name, ((const struct job *)b)->name);
}

static struct job *job_get(struct job **v, int *n, const char *name)
{
	struct job *j;
	int i;

	for (i = 0; i < *n; i++)
		if (!strcmp((*v)[i].name, name))
			return &(*v)[i];
	j = realloc(*v, (*n + 1) * sizeof(**v));
	if (!j)
		return NULL;
	*v = j;
	j = &j[(*n)++];
	memset(j, 0, sizeof(*j));
	j->name = strdup(name);
	return j->name ? j : NULL;
}

static void scan_coords(const char *store, struct job **v, int *n)
{
	char dir[4200], path[4500];
	struct dirent *de;
	struct job *j;
	DIR *d;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/coord", store);
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		f = fopen(path, "r");
		j = f ? job_get(v, n, de->d_name) : NULL;
		if (j && fscanf(f, "%299s %d", j->coord, &j->pid) == 2)
			j->alive = !kill(j->pid, 0) || errno == EPERM;
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
}

static void scan_store(struct store *s, struct job **v, int *n)
{
	struct store_gen_info *gi;
	char **names;
	int i, ng;

	if (store_list_jobs(s, &names, &ng))
		return;
	for (i = 0; i < ng; i++) {
		struct job *j = job_get(v, n, names[i]);
		struct store_gen_info *g;
		int k;

		if (!j || store_list_gens(s, names[i], &g, &k))
			continue;
		j->gens = k;
		j->last = k ? g[k - 1].gen : 0;
		free(g);
	}
	(void)gi;
	store_free_names(names, ng);
}

static void print_jobs(const struct cli *cli, struct job *v, int n)
{
	int i;

	if (!cli->json)
		printf("%-20s %-22s %-8s %-6s %5s %5s\n", "JOB", "COORDINATOR", "PID", "STATE",
		       "GENS", "LAST");
	else
		printf("{\"ok\": true, \"jobs\": [");
	for (i = 0; i < n; i++) {
		const char *state = !v[i].coord[0] ? "-" : v[i].alive ? "up" : "gone";

		if (!cli->json) {
			printf("%-20s %-22s %-8d %-6s %5d %5llu\n", v[i].name,
			       v[i].coord[0] ? v[i].coord : "-", v[i].pid, state, v[i].gens,
			       v[i].last);
			continue;
		}
		printf("%s{\"job\": ", i ? ", " : "");
		json_str(stdout, v[i].name);
		printf(", \"coord\": ");
		json_str(stdout, v[i].coord[0] ? v[i].coord : NULL);
		printf(", \"pid\": %d, \"state\": \"%s\", \"generations\": %d, \"last_gen\": %llu}",
		       v[i].pid, state, v[i].gens, v[i].last);
	}
	if (cli->json)
		printf("]}\n");
}

int cmd_list(struct cli *cli, int argc, char **argv)
{
	struct job *v = NULL;
	struct store *s;
	int n = 0, i, ret;

	ret = cli_args(cli, argc, argv, NULL, false);
	if (ret)
		return ret;
	if (cli->job[0]) {
		fprintf(stderr, "crjob list: takes no job\n");
		return EX_USAGE;
	}
	if (cli_store(cli)) {
		fprintf(stderr, "crjob list: no store: give --store, $CRJOB_STORE or 'store =' in "
			"/etc/crjob/crjob.conf\n");
		return EX_NOTFOUND;
	}
	ret = store_open(cli->store, &s);
	if (ret) {
		fprintf(stderr, "crjob list: can't open the store %s: %s\n", cli->store,
			strerror(-ret));
		return EX_NOTFOUND;
	}
	scan_coords(cli->store, &v, &n);
	scan_store(s, &v, &n);
	store_close(s);
	qsort(v, n, sizeof(*v), job_cmp);
	print_jobs(cli, v, n);
	for (i = 0; i < n; i++)
		free(v[i].name);
	free(v);
	return EX_DONE;
}
