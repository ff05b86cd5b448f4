// SPDX-License-Identifier: GPL-2.0
/*
 * Shapes that real vendors' tc programs have and simple stand-ins lack (see
 * shared/reference/real-vendors.md), each in a small program of our own whose
 * set of return values can be read off the code. tests/test_patterns_kernel.py
 * compiles this file with bcc, reads the programs back from the kernel, runs
 * them with BPF_PROG_TEST_RUN over many packets and contexts and compares what
 * they return with what the verdict analysis says. The expected set is in the
 * comment above each program and again in the test.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/udp.h>

/* slot 0: cb_notify (the "drop notification" every cb_* root tail-calls) */
BPF_PROG_ARRAY(cb_calls, 4);

/*
 * Why: reading skb->tstamp from a tc program is rewritten by the kernel into
 * a load of the tstamp-type bits into the scratch register r11 (BPF_REG_AX),
 * a test and a branch, then the load itself. Exact: {OK, SHOT}.
 */
int tstamp_verdict(struct __sk_buff *skb)
{
	if (skb->tstamp > 1000000)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

/*
 * Why: Cilium keeps the exit code in skb->cb[] and tail-calls its drop
 * notification, which returns the code it finds there. Only the tail call's
 * target can produce OK, SHOT and REDIRECT; the root itself returns UNSPEC
 * (and returns UNSPEC too should the tail call fail). Exact: {UNSPEC, OK,
 * SHOT, REDIRECT}.
 */
int cb_root(struct __sk_buff *skb)
{
	__u32 code;

	switch (skb->mark & 3) {
	case 0:
		code = TC_ACT_SHOT;
		break;
	case 1:
		code = TC_ACT_OK;
		break;
	case 2:
		code = TC_ACT_REDIRECT;
		break;
	default:
		return TC_ACT_UNSPEC;
	}
	skb->cb[1] = code;
	cb_calls.call(skb, 0);
	return TC_ACT_UNSPEC;
}

/*
 * Why: the same target reached from two tail-call sites with different
 * codes in cb[1]; a failed call returns OK or UNSPEC, which the root also
 * returns on its own. Exact: {UNSPEC, OK, SHOT, REDIRECT}.
 */
int cb_two_sites(struct __sk_buff *skb)
{
	if (skb->mark & 1) {
		skb->cb[1] = TC_ACT_SHOT;
		cb_calls.call(skb, 0);
		return TC_ACT_OK;
	}
	if (skb->mark & 2) {
		skb->cb[1] = TC_ACT_REDIRECT;
		cb_calls.call(skb, 0);
		return TC_ACT_UNSPEC;
	}
	return skb->mark & 4 ? TC_ACT_OK : TC_ACT_UNSPEC;
}

/*
 * Why: the root does not write cb[1] before the tail call, so the target
 * returns whatever an earlier filter (here: the test's context) left there:
 * any 32-bit value. Sound answers: unknown, or all of them.
 */
int cb_unset(struct __sk_buff *skb)
{
	cb_calls.call(skb, 0);
	return TC_ACT_UNSPEC;
}

/*
 * Why: the drop notification: returns the exit code its caller left in
 * cb[1]. On its own: any value (see cb_unset).
 */
int cb_notify(struct __sk_buff *skb)
{
	return skb->cb[1];
}

/*
 * Why: a helper's error code returned as the verdict. bpf_skb_load_bytes()
 * gives 0 or -EFAULT (offset past the end); every negative value means
 * "continue" in direct-action mode. Truth: {OK} plus negative errnos, words
 * {accept, continue}.
 */
int load_err(struct __sk_buff *skb)
{
	__u32 buf;
	long ret;

	ret = bpf_skb_load_bytes(skb, skb->mark & 0x1ff, &buf, sizeof(buf));
	if (ret < 0)
		return ret;
	return TC_ACT_OK;
}

/*
 * Why: the same error in an int, returned on a path of its own that also
 * writes the context; otherwise UNSPEC or OK from the loaded bytes. Truth:
 * {UNSPEC, OK} plus negative errnos, words {accept, continue}.
 */
int load_err_keep(struct __sk_buff *skb)
{
	__u32 buf;
	int ret;

	ret = bpf_skb_load_bytes(skb, skb->mark & 0x1ff, &buf, sizeof(buf));
	if (ret < 0) {
		skb->cb[0] = 1;
		return ret;
	}
	return buf & 1 ? TC_ACT_OK : TC_ACT_UNSPEC;
}

/*
 * Why: a helper's error compared, not returned. Exact: {OK, SHOT}.
 */
int load_cmp(struct __sk_buff *skb)
{
	__u32 buf;

	if (bpf_skb_load_bytes(skb, skb->mark & 0x1ff, &buf, sizeof(buf)) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

/*
 * Why: branch-heavy parsing: switches over the ethertype and the IPv4
 * protocol, each case its own verdict. Exact: {UNSPEC, OK, SHOT, PIPE,
 * STOLEN, REDIRECT}.
 */
int by_proto(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct udphdr *udp = data + ETH_HLEN + sizeof(*ip);

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_UNSPEC;
	switch (eth->h_proto) {
	case __constant_htons(ETH_P_ARP):
		return TC_ACT_OK;
	case __constant_htons(ETH_P_IPV6):
		return TC_ACT_PIPE;
	case __constant_htons(ETH_P_IP):
		break;
	default:
		return TC_ACT_UNSPEC;
	}
	if ((void *)(ip + 1) > data_end)
		return TC_ACT_SHOT;
	switch (ip->protocol) {
	case IPPROTO_TCP:
		return TC_ACT_OK;
	case IPPROTO_ICMP:
		return TC_ACT_SHOT;
	case IPPROTO_GRE:
		return TC_ACT_STOLEN;
	case IPPROTO_UDP:
		break;
	default:
		return TC_ACT_UNSPEC;
	}
	if ((void *)(udp + 1) > data_end)
		return TC_ACT_SHOT;
	if (udp->dest == __constant_htons(53))
		return TC_ACT_REDIRECT;
	return TC_ACT_OK;
}

/*
 * Why: a returned value bounded by a mask and an offset: 128 values, more
 * than a set holds. Ranges: [100, 227] (and 100 for a short frame).
 */
int masked(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	unsigned char *p = data;

	if ((void *)(p + ETH_HLEN + 1) > data_end)
		return 100;
	return (p[ETH_HLEN] & 0x7f) + 100;
}

/*
 * Why: a port returned when it lies in a window, bounded by two
 * comparisons. Ranges: [0, 0] and [1000, 1200].
 */
int port_window(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct udphdr *udp = data + ETH_HLEN + sizeof(struct iphdr);
	__u16 port;

	if ((void *)(udp + 1) > data_end)
		return TC_ACT_OK;
	port = __constant_ntohs(udp->dest);
	if (port < 1000)
		return TC_ACT_OK;
	if (port > 1200)
		return TC_ACT_OK;
	return port;
}

/*
 * Why: bpf_redirect()'s own return value is the verdict: REDIRECT, or SHOT
 * when the flags are bad (here they come from the mark). Exact: {SHOT,
 * REDIRECT}.
 */
int redirect_flags(struct __sk_buff *skb)
{
	return bpf_redirect(skb->ifindex, skb->mark);
}
