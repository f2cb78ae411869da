/* libcrd entry points: what the crd CLI (and later the node agent) calls. */
#ifndef CRD_CRD_H
#define CRD_CRD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum crd_freezer {
	FREEZER_PTRACE,
	FREEZER_CGROUP,
};

struct dump_opts {
	pid_t pid;		/* root of the tree */
	const char *dir;	/* image directory, must exist */
	bool leave_running;
	enum crd_freezer freezer;
	bool shell_job;		/* the tree runs on the caller's terminal */
	bool keep_net_locked;	/* leave the connections locked after a dump that lets run */
	const char *action_script;	/* run at post-freeze and post-dump */
	/* "unix:INODE" or "unix:PATH" (the peer's name): sockets connected outside the tree */
	const char **external;
	int n_external;
	/* node-local directories whose files the tree uses go into the image */
	const char **capture;
	int n_capture;
	/* --store: images go to generation gen (0: the next) of job in the store */
	const char *store;
	const char *job;
	const char *writer;	/* name of this dump in the generation, default tree-PID */
	uint64_t generation;
	bool compress;		/* zstd each chunk of pages */
	bool no_commit;		/* others dump into the same generation: the caller commits */
};

struct ip_remap {
	int family;		/* AF_INET or AF_INET6 */
	unsigned char from[16];
	unsigned char to[16];
};

struct restore_opts {
	const char *dir;
	bool detach;		/* print the root PID and exit, leaving the tree running */
	bool pidns;		/* restore into a new PID namespace */
	bool shell_job;		/* give the tree our terminal for the one it was on */
	bool keep_net_locked;	/* leave the restored connections locked; crd net-unlock ends it */
	/* TCP/UDP endpoints on from are restored on to (ranks moved to other nodes) */
	const struct ip_remap *remap;
	int n_remap;
	/* --store: restore from a generation (0: the latest complete) of job */
	const char *store;
	const char *job;
	const char *writer;	/* whose images, when the generation holds several */
	uint64_t generation;
	/* run as `FILE pre-resume` once the tree is back and stopped; failure kills it */
	const char *action_script;
	/* refuse images that would give the tree more than user owner has */
	bool has_owner;
	uid_t owner;
	/*
	 * with owner: node-local directories (slurmd's spool, TmpFS) where crd
	 * recreates the owner's missing captured files though the owner may not
	 * create files there
	 */
	const char **capture;
	int n_capture;
};

/* Parse "OLD=NEW" (IPv4 or IPv6 addresses) into r; 0 or -EINVAL. */
int ip_remap_parse(const char *s, struct ip_remap *r);

/* Each returns 0 or -errno, after logging what went wrong. */
int cr_dump(const struct dump_opts *opts);
/*
 * Copy the tree's memory into the store (store, job, writer, compress) while
 * it runs, tracking what it writes from then on; the next cr_dump into the
 * store writes only that.
 */
int cr_pre_dump(const struct dump_opts *opts);
/* Without detach: waits for the root and returns its exit status (>= 0). */
int cr_restore(const struct restore_opts *opts);
int cr_check(void);
/* Remove the network lock of tree pid in netns (NULL: ours). */
int cr_net_unlock(pid_t pid, const char *netns);
int cr_show(const char *path);

#endif
