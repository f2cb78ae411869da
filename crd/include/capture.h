/* Files of node-local scratch carried in the image: see crd/capture.c */
#ifndef CRD_CAPTURE_H
#define CRD_CAPTURE_H

struct dump_ctx;
struct restore_ctx;

#include <stdbool.h>

#include "crd.pb-c.h"

/* Dump: the files in /dev/shm and --capture-path dirs that inv and the tasks use. */
int capture_files(struct dump_ctx *ctx, Crd__Inventory *inv);
/* Restore, before anything opens them: recreate those that are missing. */
int restore_captured(struct restore_ctx *ctx);
/* Is path one of the inventory's captured files? */
bool capture_listed(const Crd__Inventory *inv, const char *path);

#endif
