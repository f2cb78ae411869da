/*
 * Manifests and done markers: small text files, one record a line, ending in
 * a checksum line over everything before it.  Text because people read them
 * when something went wrong; the checksum because shared storage can return
 * a torn or stale file.
 *
 *   crjob-store-manifest 1          (crjob-store-done 1 for NODE.done)
 *   job JOB / gen G / created T     (manifest only)
 *   logical L / stored S
 *   node NAME pages P zero Z new N logical L stored S
 *   pack GEN NODE
 *   file NODE NAME SIZE HASH
 *   checksum XXH3_64
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "log.h"
#include "util.h"
#include "store-int.h"

#define MANIFEST_HEAD	"crjob-store-manifest 1"
#define DONE_HEAD	"crjob-store-done 1"

void manifest_free(struct manifest *m)
{
	int i;

	for (i = 0; i < m->nfiles; i++)
		free(m->files[i].name);
	free(m->files);
	free(m->nodes);
	packset_free(&m->packs);
	memset(m, 0, sizeof(*m));
}

int manifest_add_node(struct manifest *m, const struct mnode *n)
{
	struct mnode *nv = realloc(m->nodes, (m->nnodes + 1) * sizeof(*nv));

	if (!nv)
		return -ENOMEM;
	m->nodes = nv;
	m->nodes[m->nnodes++] = *n;
	m->logical += n->logical;
	m->stored += n->stored;
	return 0;
}

int manifest_add_file(struct manifest *m, const char *name, int node, uint64_t size,
		      uint64_t hash)
{
	struct mfile *nv = realloc(m->files, (m->nfiles + 1) * sizeof(*nv));

	if (!nv)
		return -ENOMEM;
	m->files = nv;
	nv[m->nfiles].name = strdup(name);
	if (!nv[m->nfiles].name)
		return -ENOMEM;
	nv[m->nfiles].node = node;
	nv[m->nfiles].size = size;
	nv[m->nfiles].hash = hash;
	m->nfiles++;
	return 0;
}

/* ------------------------------------------------------------ writing */

static void print_body(FILE *f, const struct manifest *m)
{
	int i;

	fprintf(f, "%s\n", m->is_done ? DONE_HEAD : MANIFEST_HEAD);
	if (!m->is_done)
		fprintf(f, "job %s\ngen %" PRIu64 "\ncreated %" PRId64 "\n", m->job, m->gen,
			m->created);
	fprintf(f, "logical %" PRIu64 "\nstored %" PRIu64 "\n", m->logical, m->stored);
	for (i = 0; i < m->nnodes; i++) {
		const struct mnode *n = &m->nodes[i];

		fprintf(f, "node %s pages %" PRIu64 " zero %" PRIu64 " new %" PRIu64
			" logical %" PRIu64 " stored %" PRIu64 "\n", n->name, n->pages, n->zero,
			n->new_pages, n->logical, n->stored);
	}
	for (i = 0; i < m->packs.n; i++)
		fprintf(f, "pack %" PRIu64 " %s\n", m->packs.v[i].gen, m->packs.v[i].node);
	for (i = 0; i < m->nfiles; i++)
		fprintf(f, "file %s %s %" PRIu64 " %016" PRIx64 "\n",
			m->nodes[m->files[i].node].name, m->files[i].name, m->files[i].size,
			m->files[i].hash);
}

static int write_file(const char *path, const char *buf, size_t len)
{
	int fd, ret;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	ret = write_all(fd, buf, len);
	if (!ret && fsync(fd))
		ret = -errno;
	close(fd);
	return ret;
}

int manifest_write(const struct manifest *m, const char *dir, const char *name)
{
	char tmp[STORE_PATH_MAX], path[STORE_PATH_MAX];
	size_t len = 0;
	char *buf = NULL;
	FILE *f;
	int ret;

	ret = store_path(tmp, "%s/%s.tmp", dir, name) ?: store_path(path, "%s/%s", dir, name);
	if (ret)
		return ret;
	f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	print_body(f, m);
	fflush(f);
	fprintf(f, "checksum %016" PRIx64 "\n", (uint64_t)XXH3_64bits(buf, len));
	if (fclose(f)) {
		free(buf);
		return -ENOMEM;
	}
	ret = write_file(tmp, buf, len);
	free(buf);
	if (ret) {
		pr_err("store: can't write %s: %s\n", tmp, strerror(-ret));
		unlink(tmp);
		return ret;
	}
	if (rename(tmp, path)) {
		ret = -errno;
		pr_perror("store: can't rename %s to %s", tmp, name);
		unlink(tmp);
		return ret;
	}
	return store_fsync_path(dir);
}

/* ------------------------------------------------------------ parsing */

/* check the checksum line and cut it off; -EBADMSG if it does not match */
static int check_sum(char *buf, size_t len)
{
	unsigned long long sum;
	char *last;

	if (!len || buf[len - 1] != '\n')
		return -EBADMSG;
	buf[len - 1] = '\0';
	last = strrchr(buf, '\n');
	if (!last || sscanf(last + 1, "checksum %llx", &sum) != 1 ||
	    XXH3_64bits(buf, last + 1 - buf) != sum)
		return -EBADMSG;
	last[1] = '\0';
	return 0;
}

int manifest_find_node(const struct manifest *m, const char *name)
{
	int i;

	/* files come grouped by node, after it: the last node first */
	if (m->nnodes && !strcmp(m->nodes[m->nnodes - 1].name, name))
		return m->nnodes - 1;
	for (i = 0; i < m->nnodes; i++)
		if (!strcmp(m->nodes[i].name, name))
			return i;
	return -1;
}

static int parse_node(struct manifest *m, const char *line)
{
	unsigned long long v[5];
	struct mnode n = { 0 };
	int end = 0;

	if (sscanf(line, "node %64s pages %llu zero %llu new %llu logical %llu stored %llu%n",
		   n.name, &v[0], &v[1], &v[2], &v[3], &v[4], &end) != 6 || line[end] ||
	    !store_valid_name(n.name) || manifest_find_node(m, n.name) >= 0)
		return -EBADMSG;
	n.pages = v[0];
	n.zero = v[1];
	n.new_pages = v[2];
	n.logical = v[3];
	n.stored = v[4];
	/* the totals come from their own lines */
	return manifest_add_node(m, &n) ?: (m->logical -= n.logical, m->stored -= n.stored, 0);
}

static int parse_file(struct manifest *m, const char *line)
{
	char node[STORE_NAME_MAX + 1], name[STORE_BLOB_NAME_MAX + 1];
	unsigned long long size, hash;
	int end = 0, k;

	if (sscanf(line, "file %64s %255s %llu %llx%n", node, name, &size, &hash, &end) != 4 ||
	    line[end] || (k = manifest_find_node(m, node)) < 0 || !store_valid_blob_name(name))
		return -EBADMSG;
	return manifest_add_file(m, name, k, size, hash);
}

static int parse_line(struct manifest *m, const char *line)
{
	char node[STORE_NAME_MAX + 1];
	unsigned long long v;
	long long t;
	int end = 0;

	if (sscanf(line, "job %64s%n", m->job, &end) == 1 && !line[end])
		return store_valid_name(m->job) ? 0 : -EBADMSG;
	if (sscanf(line, "gen %llu%n", &v, &end) == 1 && !line[end])
		return (m->gen = v) ? 0 : -EBADMSG;
	if (sscanf(line, "created %lld%n", &t, &end) == 1 && !line[end])
		return m->created = t, 0;
	if (sscanf(line, "logical %llu%n", &v, &end) == 1 && !line[end])
		return m->logical = v, 0;
	if (sscanf(line, "stored %llu%n", &v, &end) == 1 && !line[end])
		return m->stored = v, 0;
	if (!strncmp(line, "node ", 5))
		return parse_node(m, line);
	if (!strncmp(line, "file ", 5))
		return parse_file(m, line);
	if (sscanf(line, "pack %llu %64s%n", &v, node, &end) == 2 && !line[end] && v &&
	    store_valid_name(node))
		return packset_add(&m->packs, v, node) < 0 ? -ENOMEM : 0;
	return -EBADMSG;
}

static int parse(char *buf, struct manifest *m)
{
	char *save, *line;
	int ret = 0;

	line = strtok_r(buf, "\n", &save);
	if (!line)
		return -EBADMSG;
	if (!strcmp(line, DONE_HEAD))
		m->is_done = 1;
	else if (strcmp(line, MANIFEST_HEAD))
		return -EBADMSG;
	while (!ret && (line = strtok_r(NULL, "\n", &save)))
		ret = parse_line(m, line);
	if (!ret && !m->nnodes)
		ret = -EBADMSG;
	if (!ret && !m->is_done && (!m->gen || !m->job[0]))
		ret = -EBADMSG;
	return ret;
}

int manifest_read(const char *path, struct manifest *m)
{
	size_t len;
	char *buf;
	int ret;

	memset(m, 0, sizeof(*m));
	ret = store_slurp(path, &buf, &len);
	if (ret)
		return ret;
	ret = check_sum(buf, len);
	if (!ret)
		ret = parse(buf, m);
	free(buf);
	if (ret) {
		pr_debug("store: %s: unreadable (%s)\n", path, strerror(-ret));
		manifest_free(m);
	}
	return ret;
}

/* a MANIFEST of gen of job, or -EBADMSG if it is any other's */
static int read_gen(const struct store *s, const char *job, uint64_t gen, struct manifest *m)
{
	char path[STORE_PATH_MAX];
	int ret;

	ret = store_path(path, "%s/jobs/%s/gen-%llu/MANIFEST", s->dir, job,
			 (unsigned long long)gen);
	if (!ret)
		ret = manifest_read(path, m);
	if (!ret && (m->is_done || m->gen != gen || strcmp(m->job, job))) {
		pr_debug("store: %s: manifest of another generation\n", path);
		manifest_free(m);
		ret = -EBADMSG;
	}
	return ret;
}

/* the newest generation whose MANIFEST parses, or gen itself */
int store_load_manifest(const struct store *s, const char *job, uint64_t gen,
			struct manifest *m)
{
	struct gen_ent *v = NULL;
	int n = 0, i, ret;

	if (!store_valid_name(job)) {
		pr_err("store %s: invalid job name '%s'\n", s->dir, job);
		return -EINVAL;
	}
	if (gen) {
		ret = read_gen(s, job, gen, m);
	} else {
		ret = store_scan_gens(s, job, &v, &n);
		if (!ret)
			ret = -ENOENT;
		for (i = n - 1; i >= 0 && ret; i--)
			if (!v[i].partial)
				ret = read_gen(s, job, v[i].gen, m);
		free(v);
	}
	if (ret && gen)
		pr_err("store %s: job %s: generation %llu is not complete (%s)\n", s->dir, job,
		       (unsigned long long)gen,
		       ret == -ENOENT ? "no MANIFEST" : strerror(-ret));
	else if (ret)
		pr_err("store %s: job %s: no complete generation\n", s->dir, job);
	return ret;
}
