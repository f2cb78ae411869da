/*
 * Image files.  Each starts with struct img_hdr; metadata images carry
 * length-prefixed protobuf entries after it, pages images carry raw page data
 * from IMG_PAGES_DATA_OFF on.  The header's length and xxh3 checksum cover the
 * payload, so truncation and corruption are found before anything is restored.
 */
#ifndef CRD_IMAGE_H
#define CRD_IMAGE_H

#include <stdint.h>
#include <sys/uio.h>
#include <protobuf-c/protobuf-c.h>

#include "crd.pb-c.h"

#define IMG_MAGIC		0x49445243u	/* "CRDI" */
#define IMG_VERSION		1
#define IMG_PAGES_DATA_OFF	4096

enum img_type {
	IMG_INVENTORY = 1,
	IMG_TASK = 2,
	IMG_PAGES = 3,
	IMG_PAGES_REFS = 4,	/* a pages image whose data is in the store (img-store.c) */
};

struct img_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t data_off;	/* where the payload starts */
	uint32_t reserved;
	uint64_t payload_len;
	uint64_t payload_hash;	/* XXH3_64bits of the payload */
};

#define IMG_INVENTORY_NAME	"inventory.img"

/* Open an image directory; -errno after logging why it can't be. */
int img_open_dir(const char *path);

/* "task-PID.img" / "pages-PID.img" / "shmem-ID.img" into buf */
void img_task_name(char *buf, size_t len, uint32_t pid);
void img_pages_name(char *buf, size_t len, uint32_t pid);
void img_shmem_name(char *buf, size_t len, uint64_t id);

/*
 * Metadata images.  Writers write NAME.tmp and rename it into place.  Readers
 * check magic, version, type, length and checksum; on failure they log what is
 * wrong with which file and return -ENOENT (missing) or -EINVAL (bad image).
 */
int img_write_msg(int dirfd, const char *name, enum img_type type,
		  const ProtobufCMessage *msg);
int img_read_msg(int dirfd, const char *name, enum img_type type,
		 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);

/* Read a whole image (any type) and check its header and checksum only. */
int img_check_file(int dirfd, const char *name, struct img_hdr *hdr);

/* Pages images: streamed writes, hashed on the way. */
struct store_writer;
struct store_ref;

struct img_pages_writer {
	int dirfd;
	int fd;
	uint64_t len;
	void *hash_state;
	char name[64];
	/* store mode: pages go to the store, the file keeps their references */
	struct store_writer *sw;
	struct store_ref *refs;
	size_t nrefs, cap_refs;
	unsigned char *part;	/* a page being filled */
	size_t plen;
};

int img_pages_create(int dirfd, const char *name, struct img_pages_writer *w);
/* The same, the data going to the store writer sw (NULL: into the file). */
int img_pages_create_sw(int dirfd, const char *name, struct store_writer *sw,
			struct img_pages_writer *w);
int img_pages_write(struct img_pages_writer *w, const void *buf, size_t len);
int img_pages_writev(struct img_pages_writer *w, const struct iovec *iov, int cnt);
/* Write the header, sync nothing, rename into place. */
int img_pages_finish(struct img_pages_writer *w);
/* Remove the partial file after a failure. */
void img_pages_abort(struct img_pages_writer *w);

/*
 * Open pages image NAME for restore, check that it holds exactly expect_len
 * bytes of data and that they match the checksum.  Returns an O_RDONLY fd
 * (data at IMG_PAGES_DATA_OFF) or -errno after logging the reason.
 */
int img_pages_open(int dirfd, const char *name, uint64_t expect_len);

#endif
