/*
 * crd show: images as JSON, decoded through the protobuf-c descriptors so
 * that a new schema field needs no code here.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crd.h"
#include "image.h"
#include "log.h"
#include "util.h"

#define BYTES_SHOWN	64

static void json_msg(FILE *f, const ProtobufCMessage *m);

static void json_value(FILE *f, const ProtobufCFieldDescriptor *fd, const void *p)
{
	switch (fd->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		fprintf(f, "%" PRId32, *(const int32_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		fprintf(f, "%" PRIu32, *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		fprintf(f, "%" PRId64, *(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		fprintf(f, "%" PRIu64, *(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		fprintf(f, "%g", *(const float *)p);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		fprintf(f, "%g", *(const double *)p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		fputs(*(const protobuf_c_boolean *)p ? "true" : "false", f);
		break;
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumValue *ev =
			protobuf_c_enum_descriptor_get_value(fd->descriptor, *(const int *)p);

		if (ev)
			json_str(f, ev->name);
		else
			fprintf(f, "%d", *(const int *)p);
		break;
	}
	case PROTOBUF_C_TYPE_STRING:
		json_str(f, *(char *const *)p ? *(char *const *)p : "");
		break;
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		size_t i;

		fprintf(f, "{\"len\": %zu, \"hex\": \"", b->len);
		for (i = 0; i < b->len && i < BYTES_SHOWN; i++)
			fprintf(f, "%02x", b->data[i]);
		fputs(b->len > BYTES_SHOWN ? "...\"}" : "\"}", f);
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE:
		json_msg(f, *(ProtobufCMessage *const *)p);
		break;
	}
}

static size_t value_size(const ProtobufCFieldDescriptor *fd)
{
	switch (fd->type) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	default:
		return 4;
	}
}

static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd)
{
	const char *base = (const char *)m;

	if (fd->label == PROTOBUF_C_LABEL_REQUIRED)
		return true;
	if (fd->type == PROTOBUF_C_TYPE_STRING || fd->type == PROTOBUF_C_TYPE_MESSAGE)
		return *(void *const *)(base + fd->offset) != NULL;
	return *(const protobuf_c_boolean *)(base + fd->quantifier_offset);
}

static void json_msg(FILE *f, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	bool first = true;
	unsigned int i;

	fputc('{', f);
	for (i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];

		if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + fd->quantifier_offset), j;
			const char *arr = *(char *const *)(base + fd->offset);

			if (!n)
				continue;
			fprintf(f, "%s\"%s\": [", first ? "" : ", ", fd->name);
			for (j = 0; j < n; j++) {
				if (j)
					fputs(", ", f);
				json_value(f, fd, arr + j * value_size(fd));
			}
			fputc(']', f);
		} else if (field_present(m, fd)) {
			fprintf(f, "%s\"%s\": ", first ? "" : ", ", fd->name);
			json_value(f, fd, base + fd->offset);
		} else {
			continue;
		}
		first = false;
	}
	fputc('}', f);
}

static int show_file(int dirfd, const char *name)
{
	const ProtobufCMessageDescriptor *desc;
	ProtobufCMessage *msg;
	struct img_hdr hdr;
	int ret;

	ret = img_check_file(dirfd, name, &hdr);
	if (ret)
		return ret;
	printf("{\"file\": ");
	json_str(stdout, name);
	printf(", \"version\": %u", hdr.version);
	if (hdr.type == IMG_PAGES) {
		printf(", \"type\": \"pages\", \"payload_len\": %" PRIu64 ", \"checksum\": \"ok\"}",
		       hdr.payload_len);
		return 0;
	}
	desc = hdr.type == IMG_INVENTORY ? &crd__inventory__descriptor :
	       hdr.type == IMG_TASK ? &crd__task_entry__descriptor : NULL;
	if (!desc) {
		pr_err("%s: unknown image type %u\n", name, hdr.type);
		return -EINVAL;
	}
	ret = img_read_msg(dirfd, name, hdr.type, desc, &msg);
	if (ret)
		return ret;
	printf(", \"type\": \"%s\", \"entries\": [",
	       hdr.type == IMG_INVENTORY ? "inventory" : "task");
	json_msg(stdout, msg);
	printf("]}");
	protobuf_c_message_free_unpacked(msg, NULL);
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int show_dir(const char *path)
{
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, i;
	int dfd, ret = 0;
	DIR *d;

	d = opendir(path);
	if (!d) {
		ret = -errno;
		pr_perror("can't open %s", path);
		return ret;
	}
	dfd = dirfd(d);
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		char **nn;

		if (len < 5 || strcmp(de->d_name + len - 4, ".img"))
			continue;
		nn = realloc(names, (n + 1) * sizeof(*names));
		if (!nn)
			break;
		names = nn;
		names[n++] = strdup(de->d_name);
	}
	qsort(names, n, sizeof(*names), cmp_names);
	printf("{\"dir\": ");
	json_str(stdout, path);
	printf(", \"images\": [");
	for (i = 0; i < n && !ret; i++) {
		if (i)
			printf(", ");
		ret = show_file(dfd, names[i]);
	}
	printf("]}\n");
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return ret;
}

int cr_show(const char *path)
{
	struct stat st;
	char *dir, *slash;
	int dirfd, ret;

	if (stat(path, &st)) {
		ret = -errno;
		pr_perror("can't find %s", path);
		return ret;
	}
	if (S_ISDIR(st.st_mode))
		return show_dir(path);
	dir = strdup(path);
	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	dirfd = open(slash ? (*dir ? dir : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ret = dirfd < 0 ? -errno : show_file(dirfd, slash ? slash + 1 : path);
	if (!ret)
		printf("\n");
	if (dirfd >= 0)
		close(dirfd);
	free(dir);
	return ret;
}
