/*
 * Pack files: a header, then chunks appended one after another.  Appends go
 * through a large buffer so that shared storage sees few, big writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "log.h"
#include "util.h"
#include "store-int.h"

#define PACK_BUF_SIZE	(4UL << 20)

int pack_create(struct pack_writer *pw, const char *path)
{
	char hdr[PACK_HDR_SIZE] = PACK_MAGIC;
	int ret;

	memset(pw, 0, sizeof(*pw));
	strcpy(pw->path, path);
	pw->buf = malloc(PACK_BUF_SIZE);
	if (!pw->buf)
		return -ENOMEM;
	pw->buf_cap = PACK_BUF_SIZE;
	pw->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (pw->fd < 0) {
		ret = -errno;
		pr_perror("store: can't create %s", path);
		free(pw->buf);
		pw->buf = NULL;
		return ret;
	}
	memcpy(pw->buf, hdr, sizeof(hdr));
	pw->buf_len = sizeof(hdr);
	pw->off = sizeof(hdr);
	return 0;
}

int pack_flush(struct pack_writer *pw)
{
	int ret;

	if (!pw->buf_len)
		return 0;
	ret = write_all(pw->fd, pw->buf, pw->buf_len);
	if (ret) {
		pr_err("store: write to %s failed: %s\n", pw->path, strerror(-ret));
		return ret;
	}
	pw->buf_len = 0;
	return 0;
}

int pack_append(struct pack_writer *pw, const void *data, size_t len, uint64_t *off)
{
	int ret;

	*off = pw->off;
	if (pw->buf_len + len > pw->buf_cap) {
		ret = pack_flush(pw);
		if (ret)
			return ret;
	}
	if (len > pw->buf_cap) {
		/* a big blob goes straight to the file */
		ret = write_all(pw->fd, data, len);
		if (ret) {
			pr_err("store: write to %s failed: %s\n", pw->path, strerror(-ret));
			return ret;
		}
	} else {
		memcpy(pw->buf + pw->buf_len, data, len);
		pw->buf_len += len;
	}
	pw->off += len;
	pw->data_bytes += len;
	return 0;
}

int pack_sync(struct pack_writer *pw)
{
	int ret = pack_flush(pw);

	if (ret)
		return ret;
	if (fsync(pw->fd)) {
		ret = -errno;
		pr_perror("store: can't fsync %s", pw->path);
	}
	return ret;
}

void pack_close(struct pack_writer *pw)
{
	if (pw->fd > 0)
		close(pw->fd);
	pw->fd = -1;
	free(pw->buf);
	pw->buf = NULL;
}

static void ref_str(const struct store_loc *l, char *buf, size_t len)
{
	snprintf(buf, len, "%016llx%016llx", (unsigned long long)l->hi,
		 (unsigned long long)l->lo);
}

int store_read_page(int fd, const char *pack_path, const char *job, uint64_t gen,
		    const struct store_loc *loc, void *page, void *dctx)
{
	char raw[STORE_PAGE_SIZE], ref[40];
	const char *why = NULL;
	XXH128_hash_t h;
	ssize_t n;

	ref_str(loc, ref, sizeof(ref));
	if (loc->len > STORE_PAGE_SIZE || (!(loc->flags & LOC_COMPRESSED) &&
					   loc->len != STORE_PAGE_SIZE)) {
		why = "bad stored length in the index";
		goto bad;
	}
	n = pread_all(fd, (loc->flags & LOC_COMPRESSED) ? raw : page, loc->len, loc->off);
	if (n < 0) {
		pr_err("store: job %s gen %llu: can't read %s at offset %llu: %s\n", job,
		       (unsigned long long)gen, pack_path, (unsigned long long)loc->off,
		       strerror(-n));
		return n;
	}
	if ((size_t)n != loc->len) {
		why = "pack truncated";
		goto bad;
	}
	if (loc->flags & LOC_COMPRESSED) {
		size_t r = ZSTD_decompressDCtx(dctx, page, STORE_PAGE_SIZE, raw, loc->len);

		if (ZSTD_isError(r) || r != STORE_PAGE_SIZE) {
			why = "can't decompress";
			goto bad;
		}
	}
	h = XXH3_128bits(page, STORE_PAGE_SIZE);
	if (h.low64 == loc->lo && h.high64 == loc->hi)
		return 0;
	why = "hash mismatch";
bad:
	pr_err("store: job %s gen %llu: page %s in %s at offset %llu: %s\n", job,
	       (unsigned long long)gen, ref, pack_path, (unsigned long long)loc->off, why);
	return -EBADMSG;
}
