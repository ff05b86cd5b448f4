// SPDX-License-Identifier: GPL-2.0
/*
 * Test classifiers for the verdict analysis: each returns a known set of values,
 * reached the ways compilers really produce them (constants, shifts, values kept
 * in callee-saved registers or on the stack across helper calls, bpf_redirect,
 * tail calls; subprograms need clang + libbpf: tests/bpf/subprog.c). The tests run them with BPF_PROG_TEST_RUN over many
 * packets and contexts and check every observed return value against the static
 * answer, and check the answer is exact where the comment says so.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/pkt_cls.h>

BPF_PROG_ARRAY(verdict_jmp, 4);

/* exact: {OK, SHOT, UNSPEC, REDIRECT}; decided by packet bytes */
int by_byte(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	unsigned char *p = data;

	/* fail open when the packet is too short to look at */
	if ((void *)(p + ETH_HLEN + 1) > data_end)
		return TC_ACT_UNSPEC;
	if (p[ETH_HLEN] < 64)
		return TC_ACT_OK;
	if (p[ETH_HLEN] < 128)
		return TC_ACT_SHOT;
	if (p[ETH_HLEN] < 192)
		return bpf_redirect(skb->ifindex, 0);
	return TC_ACT_UNSPEC;
}

/* exact: every value of the switch, from the context (mark) */
int by_mark(struct __sk_buff *skb)
{
	switch (skb->mark & 7) {
	case 0:
		return TC_ACT_UNSPEC;
	case 1:
		return TC_ACT_OK;
	case 2:
		return TC_ACT_SHOT;
	case 3:
		return TC_ACT_PIPE;
	case 4:
		return TC_ACT_STOLEN;
	case 5:
		return TC_ACT_REDIRECT;
	default:
		return TC_ACT_TRAP;
	}
}

/* exact: {0, 2} through "r0 = cond; r0 <<= 1" */
int shift(struct __sk_buff *skb)
{
	return (skb->len > 100) << 1;
}

/* exact: {OK, SHOT}, computed before helper calls and kept in r6-r9 */
int keep(struct __sk_buff *skb)
{
	int verdict = skb->mark ? TC_ACT_SHOT : TC_ACT_OK;

	bpf_get_prandom_u32();
	bpf_ktime_get_ns();
	return verdict;
}

/* exact: {UNSPEC, REDIRECT}, spilled to the stack and reloaded */
int spill(struct __sk_buff *skb)
{
	volatile int verdict = skb->len > 64 ? TC_ACT_REDIRECT : TC_ACT_UNSPEC;

	bpf_get_prandom_u32();
	return verdict;
}

/* unknown: the verdict comes from the packet itself */
int from_packet(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	unsigned char *p = data;

	if ((void *)(p + ETH_HLEN + 1) > data_end)
		return TC_ACT_UNSPEC;
	return p[ETH_HLEN] & 15;
}

int tail_ok(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

int tail_shot(struct __sk_buff *skb)
{
	return TC_ACT_SHOT;
}

/* exact: {UNSPEC (failed call), OK, SHOT}: slot 0 -> tail_ok, slot 1 -> tail_shot */
int tail_root(struct __sk_buff *skb)
{
	verdict_jmp.call(skb, skb->mark & 3);
	return TC_ACT_UNSPEC;
}
