// SPDX-License-Identifier: GPL-2.0
/*
 * Vendor stand-ins for `tcaudit lab`: programs shaped like the real ones in the
 * ways tcaudit looks at (program name, map names, tail-call shape, verdicts; see
 * shared/reference/vendors.md), not in what they do to packets. Function names
 * are the kernel program names (cut to 15 characters by the kernel).
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/pkt_cls.h>

/* Datadog CWS: hands every packet on; its router prog array like the agent's */
BPF_PROG_ARRAY(classifier_router, 4);

int classifier_ingress(struct __sk_buff *skb)
{
	classifier_router.call(skb, 0);
	return TC_ACT_UNSPEC;
}

int classifier_egress(struct __sk_buff *skb)
{
	classifier_router.call(skb, 1);
	return TC_ACT_UNSPEC;
}

/* Calico eBPF (3.13-3.20): hands packets on (TC_ACT_UNSPEC) */
BPF_HASH(cali_v4_state, u32, u32, 64);

int calico_from_workload_ep(struct __sk_buff *skb)
{
	u32 key = skb->ifindex;

	/* a map lookup, like Calico's state lookup; the verdict does not depend on it */
	cali_v4_state.lookup(&key);
	return TC_ACT_UNSPEC;
}

/* AWS network policy agent: accepts (TC_ACT_OK) or denies (TC_ACT_SHOT) */
BPF_HASH(aws_conntrack_map, u32, u32, 64);

static __always_inline int aws_policy(struct __sk_buff *skb)
{
	u32 key = skb->mark;

	/* "policy deny" entries drop, everything else is allowed and ends the chain */
	if (aws_conntrack_map.lookup(&key))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

int handle_ingress(struct __sk_buff *skb)
{
	return aws_policy(skb);
}

int handle_egress(struct __sk_buff *skb)
{
	return aws_policy(skb);
}

/* Microsoft Retina < 0.0.8 packetparser: counts, then returns TC_ACT_OK (retina#252) */
BPF_PERCPU_ARRAY(retina_packets, u64, 1);

int endpoint_ingress_filter(struct __sk_buff *skb)
{
	int key = 0;
	u64 *count = retina_packets.lookup(&key);

	if (count)
		(*count)++;
	return TC_ACT_OK;
}

/* Istio ambient (ebpf redirect mode) inside the pod: OK, or a redirect to ztunnel */
int ztunnel_ingress(struct __sk_buff *skb)
{
	if (skb->mark == 0x539)
		return bpf_redirect(skb->ifindex, 0);
	return TC_ACT_OK;
}

/* a generic vendor at a configurable pref that accepts everything */
int vendor_accept(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
