/*
 * Network lock through the nft tool.  The rule set is built as text and fed
 * to `nft -f -` running in the tree's network namespace: one transaction,
 * so the table appears with all its rules or not at all.  Rules hook input
 * and output ahead of everything else (priority raw - 1) and match the exact
 * four-tuple of each connection, so other traffic of the node is untouched.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crd.h"
#include "log.h"
#include "util.h"
#include "netlock.h"

#define TCP_ESTABLISHED_STATE	1

static const char *const nft_paths[] = { "/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft" };

static const char *nft_path(void)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(nft_paths); i++)
		if (!access(nft_paths[i], X_OK))
			return nft_paths[i];
	return NULL;
}

/* Run nft on script in netns_fd; 0 or -errno after logging nft's complaint. */
static int nft_run(int netns_fd, const char *script, size_t len)
{
	const char *nft = nft_path();
	int mfd, status;
	pid_t child;

	if (!nft) {
		pr_err("nft not found (install the nftables package): can't lock TCP connections\n");
		return -ENOENT;
	}
	mfd = memfd_create("crd-netlock", MFD_CLOEXEC);
	if (mfd < 0 || write_all(mfd, script, len) || lseek(mfd, 0, SEEK_SET)) {
		pr_perror("can't stage the nft rules");
		if (mfd >= 0)
			close(mfd);
		return -EIO;
	}
	child = fork();
	if (child < 0) {
		pr_perror("can't fork nft");
		close(mfd);
		return -EAGAIN;
	}
	if (child == 0) {
		if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET))
			_exit(126);
		if (dup2(mfd, 0) < 0 || dup2(log_get_fd(), 1) < 0 || dup2(log_get_fd(), 2) < 0)
			_exit(126);
		execl(nft, "nft", "-f", "-", (char *)NULL);
		_exit(127);
	}
	close(mfd);
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		pr_err("nft failed (status %#x) on:\n%s", status, script);
		return -EIO;
	}
	return 0;
}

static void addr_str(char *buf, size_t len, uint32_t family, const ProtobufCBinaryData *a)
{
	unsigned char raw[16] = {};

	memcpy(raw, a->data, a->len < 16 ? a->len : 16);
	if (!inet_ntop(family, raw, buf, len))
		snprintf(buf, len, "?");
}

/* One rule per direction and hook: what the endpoint sends and receives. */
static void put_conn(FILE *f, const char *table, const Crd__TcpSkEntry *e)
{
	const char *ip = e->family == AF_INET6 ? "ip6" : "ip";
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];

	addr_str(src, sizeof(src), e->family, &e->src_addr);
	addr_str(dst, sizeof(dst), e->family, &e->dst_addr);
	fprintf(f, "add rule inet %s out %s saddr %s %s daddr %s tcp sport %u tcp dport %u drop\n",
		table, ip, src, ip, dst, e->src_port, e->dst_port);
	fprintf(f, "add rule inet %s in %s saddr %s %s daddr %s tcp sport %u tcp dport %u drop\n",
		table, ip, dst, ip, src, e->dst_port, e->src_port);
}

/* A fresh table (any older one of the same tree goes) with the drop rules. */
static int build_script(pid_t tag, Crd__TcpSkEntry **sks, size_t n, char **out, size_t *len)
{
	FILE *f = open_memstream(out, len);
	char table[32];
	size_t i;

	if (!f)
		return -ENOMEM;
	snprintf(table, sizeof(table), "crd_lock_%d", tag);
	fprintf(f, "add table inet %1$s\ndelete table inet %1$s\nadd table inet %1$s\n"
		"add chain inet %1$s in { type filter hook input priority -301; }\n"
		"add chain inet %1$s out { type filter hook output priority -301; }\n", table);
	for (i = 0; i < n; i++)
		if (sks[i]->state == TCP_ESTABLISHED_STATE)
			put_conn(f, table, sks[i]);
	if (fclose(f)) {
		free(*out);
		return -ENOMEM;
	}
	return 0;
}

int netlock_lock(int netns_fd, pid_t tag, Crd__TcpSkEntry **sks, size_t n)
{
	size_t i, nconn = 0, len;
	char *script;
	int ret;

	for (i = 0; i < n; i++)
		nconn += sks[i]->state == TCP_ESTABLISHED_STATE;
	if (!nconn)
		return 0;
	ret = build_script(tag, sks, n, &script, &len);
	if (ret)
		return ret;
	ret = nft_run(netns_fd, script, len);
	free(script);
	if (ret)
		pr_err("tree %d: can't lock the network of its %zu TCP connections\n", tag, nconn);
	else
		pr_info("tree %d: network locked for %zu TCP connections\n", tag, nconn);
	return ret;
}

int netlock_unlock(int netns_fd, pid_t tag)
{
	char script[128];
	int len;

	/* adding first makes deleting a table that is not there a no-op */
	len = snprintf(script, sizeof(script),
		       "add table inet crd_lock_%1$d\ndelete table inet crd_lock_%1$d\n", tag);
	return nft_run(netns_fd, script, len);
}

int netlock_probe(void)
{
	char script[128];
	int len;

	len = snprintf(script, sizeof(script),
		       "add table inet crd_probe_%1$d\ndelete table inet crd_probe_%1$d\n", getpid());
	return nft_run(-1, script, len);
}

int cr_net_unlock(pid_t pid, const char *netns)
{
	int fd = -1, ret;

	if (netns) {
		fd = open(netns, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			ret = -errno;
			pr_perror("can't open network namespace %s", netns);
			return ret;
		}
	}
	ret = netlock_unlock(fd, pid);
	if (fd >= 0)
		close(fd);
	return ret;
}
