/*
 * Image file I/O: headers, framing and checksums.
 *
 * Metadata payload: a sequence of entries, each a little-endian u32 length
 * followed by that many bytes of a packed protobuf message.  Our metadata files
 * hold one entry each; the framing lets a file grow more without a new version.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "image.h"
#include "img-store.h"
#include "log.h"
#include "util.h"

static const char *img_type_str(enum img_type t)
{
	switch (t) {
	case IMG_INVENTORY:
		return "inventory";
	case IMG_TASK:
		return "task";
	case IMG_PAGES:
		return "pages";
	case IMG_PAGES_REFS:
		return "page references";
	}
	return "unknown";
}

int img_open_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		fd = -errno;
		pr_perror("can't open the image directory %s", path);
	}
	return fd;
}

void img_task_name(char *buf, size_t len, uint32_t pid)
{
	snprintf(buf, len, "task-%u.img", pid);
}

void img_pages_name(char *buf, size_t len, uint32_t pid)
{
	snprintf(buf, len, "pages-%u.img", pid);
}

void img_shmem_name(char *buf, size_t len, uint64_t id)
{
	snprintf(buf, len, "shmem-%llu.img", (unsigned long long)id);
}

static int write_tmp_and_rename(int dirfd, const char *name, const void *buf, size_t len)
{
	char tmp[PATH_MAX];
	int fd, ret = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		pr_perror("%s: can't create", tmp);
		return ret;
	}
	ret = write_all(fd, buf, len);
	if (ret < 0)
		pr_err("%s: write failed: %s\n", tmp, strerror(-ret));
	if (close(fd) && !ret) {
		ret = -errno;
		pr_perror("%s: close failed", tmp);
	}
	if (!ret && renameat(dirfd, tmp, dirfd, name)) {
		ret = -errno;
		pr_perror("%s: can't rename into place", name);
	}
	if (ret)
		unlinkat(dirfd, tmp, 0);
	return ret;
}

int img_write_msg(int dirfd, const char *name, enum img_type type,
		  const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	size_t total = sizeof(struct img_hdr) + 4 + len;
	struct img_hdr *hdr;
	uint8_t *buf;
	uint32_t elen = len;
	int ret;

	if (len > UINT32_MAX) {
		pr_err("%s: entry of %zu bytes is too large\n", name, len);
		return -EFBIG;
	}
	buf = calloc(1, total);
	if (!buf)
		return -ENOMEM;
	hdr = (struct img_hdr *)buf;
	memcpy(buf + sizeof(*hdr), &elen, 4);
	protobuf_c_message_pack(msg, buf + sizeof(*hdr) + 4);
	hdr->magic = IMG_MAGIC;
	hdr->version = IMG_VERSION;
	hdr->type = type;
	hdr->data_off = sizeof(*hdr);
	hdr->payload_len = 4 + len;
	hdr->payload_hash = XXH3_64bits(buf + sizeof(*hdr), 4 + len);
	ret = write_tmp_and_rename(dirfd, name, buf, total);
	free(buf);
	return ret;
}

/* Check a header against the file's real size and the type the caller wants. */
static int check_hdr(const char *name, const struct img_hdr *hdr, uint64_t fsize, int type)
{
	if (fsize < sizeof(*hdr)) {
		pr_err("%s: truncated: %llu bytes, shorter than the image header\n",
		       name, (unsigned long long)fsize);
		return -EINVAL;
	}
	if (hdr->magic != IMG_MAGIC) {
		pr_err("%s: not a crd image (bad magic 0x%08x)\n", name, hdr->magic);
		return -EINVAL;
	}
	if (hdr->version != IMG_VERSION) {
		pr_err("%s: image format version %u, this crd reads version %u\n",
		       name, hdr->version, IMG_VERSION);
		return -EINVAL;
	}
	if (type && hdr->type != type) {
		pr_err("%s: is a %s image, expected a %s image\n", name,
		       img_type_str(hdr->type), img_type_str(type));
		return -EINVAL;
	}
	if (hdr->reserved || hdr->data_off < sizeof(*hdr) || hdr->data_off > fsize) {
		pr_err("%s: corrupt header (data offset %u)\n", name, hdr->data_off);
		return -EINVAL;
	}
	if (fsize - hdr->data_off != hdr->payload_len) {
		pr_err("%s: %s: header says %llu bytes of payload, file has %llu\n", name,
		       fsize - hdr->data_off < hdr->payload_len ? "truncated" : "trailing garbage",
		       (unsigned long long)hdr->payload_len,
		       (unsigned long long)(fsize - hdr->data_off));
		return -EINVAL;
	}
	return 0;
}

/* Map a whole image read-only; checks the header and the checksum. */
static int img_map(int dirfd, const char *name, int type, struct img_hdr *hdr,
		   void **mapp, size_t *sizep)
{
	struct stat st;
	void *map = NULL;
	int fd, ret;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		if (ret == -ENOENT)
			pr_err("%s: image file missing\n", name);
		else
			pr_perror("%s: can't open", name);
		return ret;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		pr_perror("%s: can't stat", name);
		goto out;
	}
	if (st.st_size >= (off_t)sizeof(*hdr)) {
		map = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
		if (map == MAP_FAILED) {
			ret = -errno;
			pr_perror("%s: can't map", name);
			goto out;
		}
		memcpy(hdr, map, sizeof(*hdr));
	}
	ret = check_hdr(name, hdr, st.st_size, type);
	if (!ret && XXH3_64bits((char *)map + hdr->data_off, hdr->payload_len) !=
		    hdr->payload_hash) {
		pr_err("%s: checksum mismatch: the image is corrupt\n", name);
		ret = -EINVAL;
	}
	if (ret && map)
		munmap(map, st.st_size);
	else {
		*mapp = map;
		*sizep = st.st_size;
	}
out:
	close(fd);
	return ret;
}

int img_check_file(int dirfd, const char *name, struct img_hdr *hdr)
{
	size_t size;
	void *map;
	int ret;

	ret = img_map(dirfd, name, 0, hdr, &map, &size);
	if (!ret)
		munmap(map, size);
	return ret;
}

int img_read_msg(int dirfd, const char *name, enum img_type type,
		 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
	struct img_hdr hdr;
	uint32_t elen;
	size_t size;
	uint8_t *map, *p;
	int ret;

	ret = img_map(dirfd, name, type, &hdr, (void **)&map, &size);
	if (ret)
		return ret;
	p = map + hdr.data_off;
	ret = -EINVAL;
	if (hdr.payload_len < 4) {
		pr_err("%s: empty image\n", name);
		goto out;
	}
	memcpy(&elen, p, 4);
	if (elen > hdr.payload_len - 4) {
		pr_err("%s: entry of %u bytes runs past the end of the image\n", name, elen);
		goto out;
	}
	*out = protobuf_c_message_unpack(desc, NULL, elen, p + 4);
	if (!*out) {
		pr_err("%s: can't decode the %s entry\n", name, desc->short_name);
		goto out;
	}
	ret = 0;
out:
	munmap(map, size);
	return ret;
}

int img_pages_create(int dirfd, const char *name, struct img_pages_writer *w)
{
	return img_pages_create_sw(dirfd, name, NULL, w);
}

int img_pages_create_sw(int dirfd, const char *name, struct store_writer *sw,
			struct img_pages_writer *w)
{
	char tmp[PATH_MAX];

	memset(w, 0, sizeof(*w));
	w->sw = sw;
	w->dirfd = dirfd;
	snprintf(w->name, sizeof(w->name), "%s", name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	w->fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		int ret = -errno;

		pr_perror("%s: can't create", tmp);
		return ret;
	}
	w->hash_state = XXH3_createState();
	if (!w->hash_state) {
		img_pages_abort(w);
		return -ENOMEM;
	}
	XXH3_64bits_reset(w->hash_state);
	if (lseek(w->fd, IMG_PAGES_DATA_OFF, SEEK_SET) < 0) {
		int ret = -errno;

		pr_perror("%s: seek failed", tmp);
		img_pages_abort(w);
		return ret;
	}
	return 0;
}

int img_pages_write(struct img_pages_writer *w, const void *buf, size_t len)
{
	int ret;

	XXH3_64bits_update(w->hash_state, buf, len);
	if (w->sw)
		return img_refs_put(w, buf, len);
	ret = write_all(w->fd, buf, len);
	if (ret < 0) {
		pr_err("%s: write failed: %s\n", w->name, strerror(-ret));
		return ret;
	}
	w->len += len;
	return 0;
}

int img_pages_writev(struct img_pages_writer *w, const struct iovec *iov, int cnt)
{
	int i, ret;

	for (i = 0; i < cnt; i++)
		XXH3_64bits_update(w->hash_state, iov[i].iov_base, iov[i].iov_len);
	for (i = 0; w->sw && i < cnt; i++) {
		ret = img_refs_put(w, iov[i].iov_base, iov[i].iov_len);
		if (ret)
			return ret;
	}
	if (w->sw)
		return 0;
	ret = writev_all(w->fd, iov, cnt);
	if (ret < 0) {
		pr_err("%s: write failed: %s\n", w->name, strerror(-ret));
		return ret;
	}
	w->len += ret;
	return 0;
}

int img_pages_finish(struct img_pages_writer *w)
{
	struct img_hdr hdr = {
		.magic = IMG_MAGIC,
		.version = IMG_VERSION,
		.type = IMG_PAGES,
		.data_off = IMG_PAGES_DATA_OFF,
		.payload_len = w->len,
		.payload_hash = XXH3_64bits_digest(w->hash_state),
	};
	char tmp[PATH_MAX];
	int ret;

	snprintf(tmp, sizeof(tmp), "%s.tmp", w->name);
	if (w->sw)
		ret = img_refs_finish(w, &hdr);
	/* an image without data still reaches its data offset */
	else if (ftruncate(w->fd, IMG_PAGES_DATA_OFF + w->len) ||
		 pwrite(w->fd, &hdr, sizeof(hdr), 0) != sizeof(hdr))
		ret = errno ? -errno : -EIO;
	else
		ret = 0;
	if (ret) {
		pr_err("%s: can't write the header: %s\n", tmp, strerror(-ret));
		img_pages_abort(w);
		return ret;
	}
	if (close(w->fd)) {
		ret = -errno;
		w->fd = -1;
		pr_perror("%s: close failed", tmp);
		img_pages_abort(w);
		return ret;
	}
	w->fd = -1;
	if (renameat(w->dirfd, tmp, w->dirfd, w->name)) {
		ret = -errno;
		pr_perror("%s: can't rename into place", w->name);
		img_pages_abort(w);
		return ret;
	}
	XXH3_freeState(w->hash_state);
	w->hash_state = NULL;
	img_refs_free(w);
	return 0;
}

void img_pages_abort(struct img_pages_writer *w)
{
	char tmp[PATH_MAX];

	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	snprintf(tmp, sizeof(tmp), "%s.tmp", w->name);
	unlinkat(w->dirfd, tmp, 0);
	if (w->hash_state)
		XXH3_freeState(w->hash_state);
	w->hash_state = NULL;
	img_refs_free(w);
}

int img_pages_open(int dirfd, const char *name, uint64_t expect_len)
{
	struct img_hdr hdr;
	size_t size;
	void *map;
	int fd, ret;

	ret = img_map(dirfd, name, IMG_PAGES, &hdr, &map, &size);
	if (ret)
		return ret;
	munmap(map, size);
	if (hdr.data_off != IMG_PAGES_DATA_OFF || hdr.payload_len != expect_len) {
		pr_err("%s: holds %llu bytes of pages, the task image expects %llu\n", name,
		       (unsigned long long)hdr.payload_len, (unsigned long long)expect_len);
		return -EINVAL;
	}
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		pr_perror("%s: can't open", name);
		return ret;
	}
	return fd;
}
