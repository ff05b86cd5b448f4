/* SPDX-License-Identifier: GPL-2.0 */
/* Shared between bpf/verdict_probe.c and tcaudit/observer.py (which mirrors it). */
#ifndef TCAUDIT_VERDICT_PROBE_H
#define TCAUDIT_VERDICT_PROBE_H

#define PROBE_MAX_SLOTS 256

struct probe_counts {
	__u64 packets;
	__u64 bytes;
	__u64 ipv4;
	__u64 ipv6;
	__u64 arp;
	__u64 other;
};

#endif
