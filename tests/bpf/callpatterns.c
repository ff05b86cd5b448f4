// SPDX-License-Identifier: GPL-2.0
/*
 * Call shapes that real vendors' tc programs have: bpf-to-bpf subprograms
 * writing the verdict through a pointer into the caller's stack, bpf_loop()
 * callbacks, drop notifications reached from many tail-call sites with the
 * exit code (sometimes packed with an extended error) in skb->cb[], and the
 * "(int)ret < 0" sign-extension idiom. Each program is our own and its set
 * of return values can be read off the code (the comment above it; the same
 * truth is stated in tests/test_callpatterns_kernel.py).
 *
 * bcc cannot load bpf-to-bpf calls (it keeps the call but puts the callee
 * in a section of its own), so the test compiles this file with clang-14
 * (-O2 -target bpf -g) and loads it with "bpftool prog loadall"; the prog
 * array's slots are filled by the test.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* slot 0: notify (returns cb[4]), slot 1: notify_packed (cb[4] & 0xff) */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} calls SEC(".maps");

/* per-reason drop counters, bumped by the notification programs */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

#define NOTIFY		0
#define NOTIFY_PACKED	1

/* skb->cb[] words of the drop notification */
#define CB_REASON	2
#define CB_EXIT		4

/* our own drop reasons (nothing to do with any vendor's numbering) */
enum {
	R_VLAN = 1,
	R_BCAST,
	R_MCAST,
	R_ZERO_SRC,
	R_PRIO,
	R_MARK_A,
	R_MARK_B,
	R_MARK_C,
	R_HASH,
	R_LEN,
	R_QUEUE,
	R_LAST,
};

struct decision {
	__u32 reason;
	__u32 verdict;
	__u64 cookie;
};

/*
 * The callee of sub_ptr: writes both fields of the caller's struct. Its own
 * stack holds a value (TC_ACT_TRAP) that must never reach the caller.
 */
static __attribute__((noinline)) int decide(struct __sk_buff *skb,
					    struct decision *d)
{
	volatile __u32 scratch = TC_ACT_TRAP;

	d->reason = scratch + skb->priority;
	d->verdict = skb->mark & 1 ? TC_ACT_SHOT : TC_ACT_OK;
	return 0;
}

/*
 * Why: vendors hand a struct on their stack to a policy subprogram that
 * fills in the verdict; the caller returns the field it finds there after
 * the call. Exact: {OK, SHOT}.
 */
SEC("tc")
int sub_ptr(struct __sk_buff *skb)
{
	struct decision d = { .verdict = TC_ACT_UNSPEC };

	decide(skb, &d);
	skb->cb[0] = d.reason;
	return d.verdict;
}

/*
 * The callee of sub_keep: REDIRECT for an odd priority, otherwise it leaves
 * the verdict alone (UNSPEC, "no opinion"). Its own stack slot takes 99.
 */
static __attribute__((noinline)) void lookup(struct __sk_buff *skb,
					     struct decision *d)
{
	volatile __u32 mine = 99;

	if (skb->priority & 1)
		d->verdict = TC_ACT_REDIRECT + mine - 99;
	d->cookie = skb->tstamp;
}

/*
 * Why: the caller keeps a default verdict in a stack slot of its own (here
 * forced by volatile, as spills do under register pressure) that the callee
 * never touches, and reads it back after the call when the callee had no
 * opinion. Exact: {OK, SHOT, REDIRECT}.
 */
SEC("tc")
int sub_keep(struct __sk_buff *skb)
{
	struct decision d = { .verdict = (__u32)TC_ACT_UNSPEC };
	volatile __u32 fallback;

	fallback = skb->mark & 2 ? TC_ACT_SHOT : TC_ACT_OK;
	lookup(skb, &d);
	skb->cb[1] = d.cookie;
	if (d.verdict != (__u32)TC_ACT_UNSPEC)
		return d.verdict;
	return fallback;
}

struct walk {
	__u32 want;
	__u32 verdict;
	__u32 steps;
};

/* bpf_loop() callback: SHOT once the wanted index is reached, then stop */
static int walk_step(__u32 index, void *data)
{
	struct walk *w = data;

	w->steps++;
	if (index == w->want) {
		w->verdict = TC_ACT_SHOT;
		return 1;
	}
	return 0;
}

/*
 * Why: bpf_loop() (the verifier inlines it into a loop calling the callback
 * as a subprogram) with a callback writing into a context struct on the
 * caller's stack; the caller returns the field. The mark picks the wanted
 * index in [0, 7] but the loop runs 4 times. Exact: {OK, SHOT}.
 */
SEC("tc")
int loop_verdict(struct __sk_buff *skb)
{
	struct walk w = { .want = skb->mark & 7, .verdict = TC_ACT_OK };

	bpf_loop(4, walk_step, &w, 0);
	return w.verdict;
}

/*
 * Why: the same loop, the verdict decided by comparing what the callback
 * wrote. Exact: {UNSPEC, REDIRECT}.
 */
SEC("tc")
int loop_decide(struct __sk_buff *skb)
{
	struct walk w = { .want = skb->mark & 7, .verdict = TC_ACT_OK };

	bpf_loop(4, walk_step, &w, 0);
	if (w.verdict == TC_ACT_SHOT)
		return TC_ACT_REDIRECT;
	return TC_ACT_UNSPEC;
}

/* the same callback without the step counter */
static int find_step(__u32 index, void *data)
{
	struct walk *w = data;

	if (index == w->want) {
		w->verdict = TC_ACT_SHOT;
		return 1;
	}
	return 0;
}

/*
 * Why: loop_verdict without the counter the callback bumps in a field next
 * to the verdict, to tell a loss caused by the loop from one caused by the
 * counter. Exact: {OK, SHOT}.
 */
SEC("tc")
int loop_nocount(struct __sk_buff *skb)
{
	struct walk w = { .want = skb->mark & 7, .verdict = TC_ACT_OK };

	bpf_loop(4, find_step, &w, 0);
	return w.verdict;
}

/*
 * A drop notification: the reason in cb[2], the exit code in cb[4], then a
 * tail call to the notify program; should that fail, the exit code itself.
 */
static __always_inline int drop_notify(struct __sk_buff *skb, __u32 reason,
				       __u32 exitcode)
{
	skb->cb[CB_REASON] = reason;
	skb->cb[CB_EXIT] = exitcode;
	bpf_tail_call(skb, &calls, NOTIFY);
	return exitcode;
}

/*
 * Why: vendors tail-call one drop notification from a dozen sites, each
 * with its own reason in cb[2] and the same exit code in cb[4]; the notify
 * program returns cb[4]. Only OK (nothing wrong) and SHOT can come back.
 * Exact: {OK, SHOT}.
 */
SEC("tc")
int drops_many(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *eth = data;

	if (data + 14 > data_end)
		return drop_notify(skb, R_LEN, TC_ACT_SHOT);
	if (eth[12] == 0x81 && eth[13] == 0x00)
		return drop_notify(skb, R_VLAN, TC_ACT_SHOT);
	if (eth[0] == 0xff && eth[1] == 0xff)
		return drop_notify(skb, R_BCAST, TC_ACT_SHOT);
	if (eth[0] & 1)
		return drop_notify(skb, R_MCAST, TC_ACT_SHOT);
	if (eth[6] == 0 && eth[7] == 0)
		return drop_notify(skb, R_ZERO_SRC, TC_ACT_SHOT);
	if (skb->priority == 7)
		return drop_notify(skb, R_PRIO, TC_ACT_SHOT);
	if (skb->mark == 1)
		return drop_notify(skb, R_MARK_A, TC_ACT_SHOT);
	if (skb->mark == 2)
		return drop_notify(skb, R_MARK_B, TC_ACT_SHOT);
	if (skb->mark == 3)
		return drop_notify(skb, R_MARK_C, TC_ACT_SHOT);
	if ((skb->hash & 0xff) == 0x5a)
		return drop_notify(skb, R_HASH, TC_ACT_SHOT);
	if (skb->queue_mapping > 3)
		return drop_notify(skb, R_QUEUE, TC_ACT_SHOT);
	return TC_ACT_OK;
}

/*
 * Why: the notification target: counts the reason, returns the exit code
 * its caller left in cb[4]. On its own: any value.
 */
SEC("tc")
int notify(struct __sk_buff *skb)
{
	__u32 reason = skb->cb[CB_REASON] & 63;
	__u64 *count = bpf_map_lookup_elem(&drops, &reason);

	if (count)
		__sync_fetch_and_add(count, 1);
	return skb->cb[CB_EXIT];
}

/* the exit code with an extended error in the bits above the low byte */
static __always_inline int drop_ext(struct __sk_buff *skb, __u32 reason,
				    __u32 ext, __u32 exitcode)
{
	skb->cb[CB_REASON] = reason;
	skb->cb[CB_EXIT] = ext << 8 | exitcode;
	bpf_tail_call(skb, &calls, NOTIFY_PACKED);
	return exitcode;
}

/*
 * Why: vendors pack an extended error above the exit code in cb[4]; each
 * site has its own extended error, the target returns cb[4] & 0xff. One
 * site notifies an accepted packet (audit). Exact: {OK, SHOT}.
 */
SEC("tc")
int drops_packed(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *eth = data;

	if (data + 14 > data_end)
		return drop_ext(skb, R_LEN, 1, TC_ACT_SHOT);
	if (eth[12] == 0x81 && eth[13] == 0x00)
		return drop_ext(skb, R_VLAN, 2, TC_ACT_SHOT);
	if (eth[0] == 0xff && eth[1] == 0xff)
		return drop_ext(skb, R_BCAST, 3, TC_ACT_SHOT);
	if (eth[0] & 1)
		return drop_ext(skb, R_MCAST, 0x44, TC_ACT_SHOT);
	if (skb->priority == 7)
		return drop_ext(skb, R_PRIO, 0x155, TC_ACT_SHOT);
	if (skb->mark == 1)
		return drop_ext(skb, R_MARK_A, 0xfff, TC_ACT_SHOT);
	if (skb->mark == 2)
		return drop_ext(skb, R_MARK_B, 0x7ffe, TC_ACT_SHOT);
	if (skb->mark == 3)
		return drop_ext(skb, R_MARK_C, 0xabcdef, TC_ACT_SHOT);
	if ((skb->hash & 0xff) == 0x5a)
		return drop_ext(skb, R_HASH, 0x10000, TC_ACT_SHOT);
	if (skb->mark == 4)
		return drop_ext(skb, R_MARK_A, 0x77, TC_ACT_OK);
	return TC_ACT_OK;
}

/*
 * Why: the packed notification target: returns the low byte of cb[4]. On
 * its own: [0, 255].
 */
SEC("tc")
int notify_packed(struct __sk_buff *skb)
{
	__u32 reason = skb->cb[CB_REASON] & 63;
	__u64 *count = bpf_map_lookup_elem(&drops, &reason);

	if (count)
		__sync_fetch_and_add(count, 1);
	return skb->cb[CB_EXIT] & 0xff;
}

/*
 * Returns -EINVAL, -EPERM, OK or REDIRECT (and leaves the upper half of r0
 * to the compiler: the caller must sign-extend before testing).
 */
static __attribute__((noinline)) int classify(struct __sk_buff *skb)
{
	switch (skb->mark & 3) {
	case 0:
		return -22;
	case 1:
		return TC_ACT_OK;
	case 2:
		return TC_ACT_REDIRECT;
	default:
		return -1;
	}
}

/*
 * Why: "int ret = f(); if (ret < 0) drop; return ret;": clang keeps ret in
 * r0 and tests a sign-extended copy (r1 = r0; r1 <<= 32; r1 s>>= 32;
 * if r1 s< 0); r0 itself is returned on the other path. Exact: {OK, SHOT,
 * REDIRECT}.
 */
SEC("tc")
int sext_ret(struct __sk_buff *skb)
{
	int ret = classify(skb);

	if (ret < 0)
		return TC_ACT_SHOT;
	return ret;
}

char _license[] SEC("license") = "GPL";
