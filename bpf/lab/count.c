// SPDX-License-Identifier: GPL-2.0
/*
 * Test classifier: counts the packets that reach it, then returns VERDICT.
 *
 * Two of these on one hook show the kernel's real execution order: the one that
 * ends the chain (VERDICT 0 = TC_ACT_OK) hides packets from every one after it,
 * so whichever counter stays at zero ran later. Compiled by bcc with
 * -DVERDICT=<n>; the default hands the packet on (TC_ACT_UNSPEC).
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>

#ifndef VERDICT
#define VERDICT TC_ACT_UNSPEC
#endif

/* slot 0: packets seen; an array so user space reads it without a lookup miss */
BPF_ARRAY(seen, u64, 1);

int count(struct __sk_buff *skb)
{
	int key = 0;
	u64 *value = seen.lookup(&key);

	/* atomic: the hook runs on every CPU at once */
	if (value)
		__sync_fetch_and_add(value, 1);
	return VERDICT;
}
