// SPDX-License-Identifier: GPL-2.0
/*
 * A Cilium-shaped classifier tree: a root ("cil_from_container") that parses the
 * Ethernet header and tail-calls through a prog array into per-protocol programs
 * and a policy program. Like Cilium's bpf_lxc, it accepts with TC_ACT_OK, drops
 * with TC_ACT_SHOT (also when a tail call fails) and redirects on some paths.
 * Eight programs, like a small slice of Cilium's cilium_calls array; the unrolled
 * header walks give the tree the size of a real datapath (over 5,000 xlated
 * instructions), which the verdict analysis and its benchmarks need.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/pkt_cls.h>

#define SLOT_IPV4	0
#define SLOT_IPV6	1
#define SLOT_POLICY	2
#define SLOT_CT4	3
#define SLOT_NAT4	4
#define SLOT_LB6	5
#define SLOT_ICMP	6
#ifndef WALK
#define WALK		80
#endif

BPF_PROG_ARRAY(cilium_calls, 8);

/* a byte-wise walk over the packet: where it ends decides the verdict */
static __always_inline int walk(struct __sk_buff *skb, unsigned int seed)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	unsigned char *p = data;
	unsigned int acc = seed;
	int i;

#pragma unroll
	for (i = 0; i < WALK; i++) {
		if ((void *)(p + i + 1) > data_end)
			break;
		acc = acc * 31 + p[i];
		if ((acc & 0xff) == 0x5a)
			return TC_ACT_SHOT;
	}
	return acc & 1;
}

int cil_from_container(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_SHOT;
	if (eth->h_proto == __constant_htons(ETH_P_IP))
		cilium_calls.call(skb, SLOT_IPV4);
	else if (eth->h_proto == __constant_htons(ETH_P_IPV6))
		cilium_calls.call(skb, SLOT_IPV6);
	else
		return TC_ACT_OK;
	/* like Cilium: a missing tail call target is a drop (DROP_MISSED_TAIL_CALL) */
	return TC_ACT_SHOT;
}

int cil_handle_ipv4(struct __sk_buff *skb)
{
	int r = walk(skb, 4);

	if (r == TC_ACT_SHOT)
		return TC_ACT_SHOT;
	if (r)
		cilium_calls.call(skb, SLOT_POLICY);
	else if (skb->mark & 1)
		cilium_calls.call(skb, SLOT_CT4);
	return TC_ACT_OK;
}

int cil_handle_ipv6(struct __sk_buff *skb)
{
	int r = walk(skb, 6);

	if (r == TC_ACT_SHOT)
		return TC_ACT_SHOT;
	if (r)
		return bpf_redirect(skb->ifindex, 0);
	if (skb->mark & 2)
		cilium_calls.call(skb, SLOT_LB6);
	return TC_ACT_OK;
}

int cil_policy(struct __sk_buff *skb)
{
	int r = walk(skb, 99);

	if (r == TC_ACT_SHOT || skb->mark == 0xdead)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

int cil_ct4(struct __sk_buff *skb)
{
	int r = walk(skb, 41);

	if (r == TC_ACT_SHOT)
		return TC_ACT_SHOT;
	/* established: skip NAT */
	if (r)
		return TC_ACT_OK;
	cilium_calls.call(skb, SLOT_NAT4);
	return TC_ACT_SHOT;
}

int cil_nat4(struct __sk_buff *skb)
{
	int r = walk(skb, 44);

	if (r == TC_ACT_SHOT)
		return TC_ACT_SHOT;
	if (r)
		cilium_calls.call(skb, SLOT_ICMP);
	return TC_ACT_OK;
}

int cil_lb6(struct __sk_buff *skb)
{
	int r = walk(skb, 66);

	if (r == TC_ACT_SHOT)
		return TC_ACT_SHOT;
	return r ? bpf_redirect(skb->ifindex, 0) : TC_ACT_OK;
}

int cil_icmp(struct __sk_buff *skb)
{
	/* "send an ICMP error": here simply a drop, like Cilium's send_drop_notify */
	return walk(skb, 1) == 1 ? TC_ACT_OK : TC_ACT_SHOT;
}
