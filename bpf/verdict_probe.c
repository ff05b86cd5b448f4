// SPDX-License-Identifier: GPL-2.0
/*
 * tcaudit's observer: counts what reaches its place in a tc chain, and never
 * changes a packet's fate.
 *
 * One loaded program serves every observer: each observer filter carries its
 * slot number as its classid, and cls_bpf stores the running filter's classid
 * in qdisc_skb_cb(skb)->tc_classid right before it runs the program
 * (net/sched/cls_bpf.c, cls_bpf_classify), which sched_cls programs read as
 * skb->tc_classid.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/pkt_cls.h>

#include "verdict_probe.h"

/* per-CPU: no atomics on the hot path, user space sums the CPUs */
BPF_PERCPU_ARRAY(probe_counts, struct probe_counts, PROBE_MAX_SLOTS);

int observe(struct __sk_buff *skb)
{
	__u32 slot = skb->tc_classid;
	struct probe_counts *c = probe_counts.lookup(&slot);

	/* fail open: an unknown slot is not ours to count, the packet goes on */
	if (!c)
		return TC_ACT_UNSPEC;
	c->packets++;
	c->bytes += skb->len;
	/* skb->protocol is in network byte order */
	if (skb->protocol == __constant_htons(ETH_P_IP))
		c->ipv4++;
	else if (skb->protocol == __constant_htons(ETH_P_IPV6))
		c->ipv6++;
	else if (skb->protocol == __constant_htons(ETH_P_ARP))
		c->arp++;
	else
		c->other++;
	return TC_ACT_UNSPEC;
}

/* the benchmark's baseline: the cheapest classifier that hands packets on */
int empty(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}
