/*
 * --remap-ip OLD=NEW: a tree restored on other nodes gets its TCP and UDP
 * endpoints moved from the old addresses to the new ones, both its own and its
 * peers', with sequence numbers and queues untouched.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "crd.h"
#include "log.h"
#include "remap.h"

int ip_remap_parse(const char *s, struct ip_remap *r)
{
	char buf[INET6_ADDRSTRLEN * 2 + 2], *eq;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	eq = strchr(buf, '=');
	if (!eq)
		return -EINVAL;
	*eq = '\0';
	memset(r, 0, sizeof(*r));
	if (inet_pton(AF_INET, buf, r->from) == 1 && inet_pton(AF_INET, eq + 1, r->to) == 1)
		r->family = AF_INET;
	else if (inet_pton(AF_INET6, buf, r->from) == 1 && inet_pton(AF_INET6, eq + 1, r->to) == 1)
		r->family = AF_INET6;
	else
		return -EINVAL;
	return 0;
}

static void remap_addr(const struct restore_opts *o, uint32_t family, ProtobufCBinaryData *a)
{
	size_t len = family == AF_INET ? 4 : 16;
	int i;

	if (!a->data || a->len != len)
		return;
	for (i = 0; i < o->n_remap; i++)
		if ((uint32_t)o->remap[i].family == family && !memcmp(a->data, o->remap[i].from, len)) {
			memcpy(a->data, o->remap[i].to, len);
			return;
		}
}

void remap_inventory(const struct restore_opts *o, Crd__Inventory *inv)
{
	size_t i;

	for (i = 0; o->n_remap && i < inv->n_tcp_sks; i++) {
		remap_addr(o, inv->tcp_sks[i]->family, &inv->tcp_sks[i]->src_addr);
		remap_addr(o, inv->tcp_sks[i]->family, &inv->tcp_sks[i]->dst_addr);
	}
	for (i = 0; o->n_remap && i < inv->n_udp_sks; i++) {
		remap_addr(o, inv->udp_sks[i]->family, &inv->udp_sks[i]->src_addr);
		remap_addr(o, inv->udp_sks[i]->family, &inv->udp_sks[i]->dst_addr);
	}
}
