/*
 * restore --owner UID: an image may have been edited by its owner, and crd
 * runs as root, so nothing in it may give the restored tree more than UID
 * has.  Refused before anything is created:
 *  - credentials other than UID's (uids, gids outside UID's groups, any
 *    capability for a user other than root);
 *  - System V objects or captured files that would belong to someone else
 *    (a captured file of the owner's in a group of root's is given the
 *    owner's group, without group permissions);
 *  - a path the tree would open, map, execute or create (files, mappings,
 *    the executable, captured files, bound socket names) that UID could not
 *    reach itself: checked by a child that has UID's credentials, since
 *    access(2) and the kernel's own checks are what decide.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture.h"
#include "cr-restore.h"
#include "log.h"

#define OWNER_MAX_GROUPS	256

struct owner {
	uid_t uid;
	gid_t groups[OWNER_MAX_GROUPS];	/* groups[0] is the primary one */
	int nr_groups;
};

/* a path and what the tree does with it: R_OK, W_OK, X_OK, or 0 to create it */
struct owner_path {
	const char *path;
	int mode;
	const char *what;
	/* in the image: crd recreates it when missing */
	bool captured;
	/* ... for the owner in capture directory path[0..capture_len) too */
	size_t capture_len;
};

struct path_list {
	struct owner_path *p;
	size_t nr, cap;
};

static int owner_load(uid_t uid, struct owner *o)
{
	struct passwd *pw = getpwuid(uid);

	o->uid = uid;
	if (!pw) {
		pr_err("--owner %u: no such user\n", uid);
		return -ENOENT;
	}
	o->nr_groups = OWNER_MAX_GROUPS;
	if (getgrouplist(pw->pw_name, pw->pw_gid, o->groups, &o->nr_groups) < 0) {
		pr_err("--owner %u: more than %d groups\n", uid, OWNER_MAX_GROUPS);
		return -E2BIG;
	}
	o->groups[0] = pw->pw_gid;	/* getgrouplist puts it first; make sure */
	return 0;
}

static bool owner_has_gid(const struct owner *o, gid_t g)
{
	int i;

	for (i = 0; i < o->nr_groups; i++)
		if (o->groups[i] == g)
			return true;
	return false;
}

static int check_creds(const struct owner *o, uint32_t tid, const Crd__Creds *c)
{
	uint32_t gids[4] = { c->gid, c->egid, c->sgid, c->fsgid };
	size_t i;

	if (c->uid != o->uid || c->euid != o->uid || c->suid != o->uid || c->fsuid != o->uid) {
		pr_err("tid %u: image has uids %u/%u/%u/%u, not the owner's %u: refused\n", tid,
		       c->uid, c->euid, c->suid, c->fsuid, o->uid);
		return -EPERM;
	}
	for (i = 0; i < 4; i++)
		if (!owner_has_gid(o, gids[i]))
			goto bad_gid;
	for (i = 0; i < c->n_groups; i++)
		if (!owner_has_gid(o, c->groups[i]))
			goto bad_gid;
	if (o->uid && (c->cap_prm || c->cap_eff || c->cap_inh || c->cap_amb)) {
		pr_err("tid %u: image gives capabilities %#llx to user %u: refused\n", tid,
		       (unsigned long long)(c->cap_prm | c->cap_eff | c->cap_inh | c->cap_amb),
		       o->uid);
		return -EPERM;
	}
	return 0;
bad_gid:
	pr_err("tid %u: image has a group user %u is not in: refused\n", tid, o->uid);
	return -EPERM;
}

static int add_captured(struct path_list *l, const char *path, int mode, const char *what,
			bool captured, size_t capture_len);

static int check_ids(const struct owner *o, uint32_t uid, uint32_t gid, const char *what)
{
	if (uid == o->uid && owner_has_gid(o, gid))
		return 0;
	pr_err("%s would belong to %u:%u, not to the owner %u: refused\n", what, uid, gid,
	       o->uid);
	return -EPERM;
}

static int add_path(struct path_list *l, const char *path, int mode, const char *what)
{
	return add_captured(l, path, mode, what, false, 0);
}

static int add_captured(struct path_list *l, const char *path, int mode, const char *what,
			bool captured, size_t capture_len)
{
	if (!path || !path[0] || path[0] == '@')	/* abstract socket names: no file */
		return 0;
	if (l->nr == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct owner_path *p = realloc(l->p, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		l->p = p;
		l->cap = cap;
	}
	l->p[l->nr++] = (struct owner_path){ path, mode, what, captured, capture_len };
	return 0;
}

static int open_mode(uint32_t flags)
{
	switch (flags & O_ACCMODE) {
	case O_WRONLY:
		return W_OK;
	case O_RDWR:
		return R_OK | W_OK;
	}
	return R_OK;
}

/*
 * The length of the --capture-path directory path is in, 0 if none: a clean
 * path (no . or .. components) at least two levels below it.
 */
static size_t capture_len(const struct restore_opts *opts, const char *path)
{
	const char *rest;
	size_t n;
	int i;

	if (strstr(path, "/../") || strstr(path, "/./") || strstr(path, "//"))
		return 0;
	for (i = 0; i < opts->n_capture; i++) {
		n = strlen(opts->capture[i]);
		while (n > 1 && opts->capture[i][n - 1] == '/')
			n--;
		if (strncmp(path, opts->capture[i], n) || path[n] != '/')
			continue;
		rest = strchr(path + n + 1, '/');
		if (rest && rest[1])
			return n;
	}
	return 0;
}

static int collect_files(const Crd__Inventory *inv, const struct restore_opts *opts,
			 struct path_list *l)
{
	size_t i;
	int ret = 0;

	for (i = 0; i < inv->n_files && !ret; i++) {
		const Crd__FileEntry *f = inv->files[i];

		/* deleted files come back from their contents in the image */
		if (f->has_shmid)
			continue;
		if (f->path && capture_listed(inv, f->path)) {
			ret = add_captured(l, f->path, open_mode(f->flags), "an open file", true,
					   capture_len(opts, f->path));
			continue;
		}

		if (f->path && (f->type == CRD__FILE_TYPE__FILE_REG ||
				f->type == CRD__FILE_TYPE__FILE_FIFO ||
				f->type == CRD__FILE_TYPE__FILE_CHR))
			ret = add_path(l, f->path, open_mode(f->flags), "an open file");
		else if (f->path && f->type == CRD__FILE_TYPE__FILE_DIR)
			ret = add_path(l, f->path, R_OK | X_OK, "an open directory");
	}
	for (i = 0; i < inv->n_unix_sks && !ret; i++)
		if (inv->unix_sks[i]->name && !inv->unix_sks[i]->external)
			ret = add_path(l, inv->unix_sks[i]->name, 0, "a socket name");
	for (i = 0; i < inv->n_captured && !ret; i++)
		ret = add_captured(l, inv->captured[i]->path, 0, "a captured file", true,
				   capture_len(opts, inv->captured[i]->path));
	return ret;
}

static int collect_task(const Crd__Inventory *inv, const struct restore_opts *opts,
			const Crd__TaskEntry *te, struct path_list *l)
{
	size_t i;
	int ret = add_path(l, te->mm->exe_path, R_OK, "the executable");

	for (i = 0; i < te->n_vmas && !ret; i++) {
		const Crd__VmaEntry *v = te->vmas[i];
		int mode = R_OK;

		if (v->kind != CRD__VMA_KIND__VMA_FILE_PRIVATE &&
		    v->kind != CRD__VMA_KIND__VMA_FILE_SHARED)
			continue;
		if (v->has_shmid || !v->path)
			continue;
		if (v->kind == CRD__VMA_KIND__VMA_FILE_SHARED && (v->prot & PROT_WRITE))
			mode |= W_OK;
		if (capture_listed(inv, v->path))
			ret = add_captured(l, v->path, mode, "a mapped file", true,
					   capture_len(opts, v->path));
		else
			ret = add_path(l, v->path, mode, "a mapped file");
	}
	return ret;
}

/* what the tree creates must be creatable by the owner: its directory writable */
static bool may_create(const char *path)
{
	char *dup, *dir;
	int ok;

	if (!access(path, W_OK))	/* there already, and the owner's to reuse */
		return true;
	dup = strdup(path);
	if (!dup)
		return false;
	/* missing directories are made too: the first one there must be writable */
	dir = dirname(dup);
	while (access(dir, F_OK) && errno == ENOENT && strcmp(dir, "/"))
		dir = dirname(dir);
	ok = !access(dir, W_OK | X_OK);
	free(dup);
	return ok;
}

/*
 * A missing captured file in a capture directory: crd makes it the owner's
 * where the owner could not, but not beside the directory's own files (a
 * spool's state): only below a first-level directory that is missing too or
 * the owner's (slurmd's jobJOB/, a job's TmpFS directory).
 */
static bool capture_may_create(const struct owner *o, const struct owner_path *p)
{
	const char *end = strchr(p->path + p->capture_len + 1, '/');
	struct stat st;
	char *sub;
	bool ok;

	sub = end ? strndup(p->path, end - p->path) : NULL;
	if (!sub)
		return false;
	ok = lstat(sub, &st) ? errno == ENOENT : S_ISDIR(st.st_mode) && st.st_uid == o->uid;
	free(sub);
	return ok;
}

/* as the owner: may the tree have path p? */
static bool path_ok(const struct owner *o, const struct owner_path *p)
{
	struct stat st;

	/* crd recreates a missing captured file, the owner's */
	if (p->captured && lstat(p->path, &st) && errno == ENOENT)
		return may_create(p->path) || (p->capture_len && capture_may_create(o, p));
	/* there: crd leaves it as it is, the tree's uses of it are checked */
	if (!p->mode)
		return p->captured || may_create(p->path);
	return !access(p->path, p->mode);
}

static void drop_to(const struct owner *o)
{
	if (setgroups(o->nr_groups, o->groups) || setgid(o->groups[0]) || setuid(o->uid))
		_exit(255);
}

/* Returns the index of the first path the owner may not use, or -1. */
static long first_denied(const struct owner *o, const struct path_list *l)
{
	int status;
	pid_t pid;
	size_t i;

	pid = fork();
	if (pid < 0)
		return -2;
	if (pid == 0) {
		drop_to(o);
		for (i = 0; i < l->nr && i < 254; i++)
			if (!path_ok(o, &l->p[i]))
				_exit(i);
		_exit(254);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -2;
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 255)
		return -2;
	return WEXITSTATUS(status) == 254 ? -1 : WEXITSTATUS(status);
}

static int check_paths(const struct owner *o, const struct path_list *l)
{
	size_t done;

	/* in batches: the child's exit status is the only answer it gives */
	for (done = 0; done < l->nr; done += 254) {
		struct path_list part = { l->p + done, l->nr - done, 0 };
		long bad = first_denied(o, &part);

		if (bad == -2) {
			pr_err("--owner %u: can't check paths as that user\n", o->uid);
			return -ECHILD;
		}
		if (bad >= 0) {
			const struct owner_path *p = &part.p[bad];

			pr_err("%s %s: missing, or user %u may not %s it: refused\n", p->what,
			       p->path, o->uid, p->mode ? "use" : "create");
			return -EACCES;
		}
	}
	return 0;
}

static int check_sysv(const struct owner *o, const Crd__Inventory *inv)
{
	size_t i;
	int ret = 0;

	for (i = 0; i < inv->n_sysv_shms && !ret; i++)
		ret = check_ids(o, inv->sysv_shms[i]->uid, inv->sysv_shms[i]->gid,
				"a System V segment");
	for (i = 0; i < inv->n_sysv_sems && !ret; i++)
		ret = check_ids(o, inv->sysv_sems[i]->uid, inv->sysv_sems[i]->gid,
				"a System V semaphore set");
	for (i = 0; i < inv->n_sysv_msgs && !ret; i++)
		ret = check_ids(o, inv->sysv_msgs[i]->uid, inv->sysv_msgs[i]->gid,
				"a System V message queue");
	for (i = 0; i < inv->n_captured && !ret; i++) {
		Crd__CapturedFile *c = inv->captured[i];

		/*
		 * A file root made for the owner in a group the owner is not in
		 * (slurmd writes the batch script as UID:0) comes back in the
		 * owner's primary group without group permissions: no more than
		 * the owner had.
		 */
		if (c->uid == o->uid && !owner_has_gid(o, c->gid)) {
			pr_info("%s: group %u is not user %u's: restored as %u:%u, mode %o\n",
				c->path, c->gid, o->uid, o->uid, o->groups[0], c->mode & ~070);
			c->gid = o->groups[0];
			c->mode &= ~070;
		}
		ret = check_ids(o, c->uid, c->gid, c->path);
	}
	return ret;
}

int owner_check(const struct restore_ctx *ctx, uid_t uid)
{
	struct path_list l = { };
	struct owner o;
	size_t i, j;
	int ret;

	ret = owner_load(uid, &o);
	for (i = 0; i < ctx->nr_tasks && !ret; i++) {
		const Crd__TaskEntry *te = ctx->tasks[i].te;

		if (!te)	/* a zombie: it runs nothing */
			continue;
		for (j = 0; j < te->n_threads && !ret; j++)
			ret = check_creds(&o, te->threads[j]->tid, te->threads[j]->creds);
		if (!ret)
			ret = collect_task(ctx->inv, ctx->opts, te, &l);
	}
	if (!ret)
		ret = check_sysv(&o, ctx->inv);
	if (!ret)
		ret = collect_files(ctx->inv, ctx->opts, &l);
	if (!ret)
		ret = check_paths(&o, &l);
	free(l.p);
	return ret;
}
