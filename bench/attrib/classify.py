#!/usr/bin/env python3
"""Split `perf script` samples of the balancer's CPU into the cost buckets of bench/README.md.

Usage: perf script -i perf.data -F comm,ip,sym,dso | bench/attrib/classify.py [DELIVERED_PPS BUSY_PERCENT]

With the delivered rate and the balancer core's busy percentage over the same window (both from
benchlab's log), each bucket's share of busy time is turned into microseconds per packet.

Each sample's call chain is walked from the leaf towards the root; the first frame that names a
bucket decides. perf on this VM samples with a software clock (no PMU), so time spent with
interrupts off is billed to the frame that turns them back on (handle_softirqs,
_raw_spin_unlock_irqrestore): those land in the "irq-off" bucket of the context they are in.
"""
import sys, collections

# (bucket, frames): checked leaf first; the first frame found in a bucket's set decides.
RULES = [
    ("rx: nft guard (netdev ingress)", {"nft_do_chain_netdev", "nf_hook_slow", "nf_hook_ingress"}),
    ("rx: IP stack (ip_rcv, route, drop)", {"ip_rcv", "ip_rcv_core", "ip_rcv_finish", "ip_route_input_noref", "ip_list_rcv", "ip_forward", "nf_conntrack_in", "nf_nat_inet_fn", "ip_output", "ip_finish_output2", "neigh_resolve_output"}),
    ("rx: block retire timer + reader wake-up", {"prb_retire_rx_blk_timer_expired", "sock_def_readable"}),
    ("rx: tpacket_rcv (copy into ring)", {"tpacket_rcv", "tpacket_get_timestamp"}),
    ("rx: packet_rcv_fanout (demux)", {"packet_rcv_fanout"}),
    ("tx: RPS enqueue + IPI to load CPU", {"net_rps_send_ipi", "enqueue_to_backlog", "netif_rx_internal", "__netif_rx", "get_rps_cpu"}),
    ("tx: veth xmit / forward", {"veth_xmit", "__dev_forward_skb2", "skb_copy_ubufs"}),
    ("tx: skb alloc / fill", {"sock_alloc_send_pskb", "alloc_skb_with_frags", "__alloc_skb", "tpacket_fill_skb", "skb_store_bits", "packet_parse_headers", "skb_set_owner_w"}),
    ("tx: completion / skb free", {"sock_wfree", "tpacket_destruct_skb", "tpacket_ubuf_complete"}),
    ("tx: packet_sendmsg / dev_direct_xmit (rest)", {"packet_sendmsg", "tpacket_snd", "__dev_direct_xmit", "packet_xmit", "validate_xmit_skb.isra.0", "validate_xmit_skb"}),
    ("rx: skb free after the tap", {"sk_skb_reason_drop", "kfree_skb_reason", "kfree_skb_list_reason"}),
    ("rx: softirq core (backlog, netif_receive_skb)", {"__netif_receive_skb_core.constprop.0", "__netif_receive_skb_core", "__netif_receive_skb_one_core", "process_backlog", "__napi_poll", "net_rx_action"}),
    ("softirq/IPI entry, irq-off time", {"handle_softirqs", "__irq_exit_rcu", "sysvec_call_function_single", "asm_sysvec_call_function_single", "flush_smp_call_function_queue"}),
    ("timers (hrtimer, tick)", {"hrtimer_run_softirq", "__hrtimer_run_queues", "sysvec_apic_timer_interrupt", "asm_sysvec_apic_timer_interrupt"}),
    ("scheduler / futex / wake-ups", {"__schedule", "schedule", "do_futex", "__x64_sys_futex", "try_to_wake_up", "finish_task_switch.isra.0", "schedule_idle", "__x64_sys_nanosleep", "__x64_sys_sched_yield"}),
    ("poll(2)", {"do_sys_poll", "__x64_sys_ppoll", "__x64_sys_poll", "packet_poll"}),
    ("syscall entry/exit", {"do_syscall_64", "entry_SYSCALL_64_after_hwframe", "syscall_exit_to_user_mode"}),
    ("idle", {"pv_native_safe_halt", "default_idle", "cpuidle_enter_state", "do_idle"}),
]

# A BPF program's frames: the caller further up says which program it is.
BPF = {"bpf_prog_run_pin_on_cpu", "bpf_skb_load_helper_8", "bpf_skb_load_helper_16", "bpf_skb_load_helper_32",
       "___bpf_prog_run", "__bpf_prog_run32", "__bpf_prog_run64", "run_filter", "sk_filter_trim_cap", "bpf_dispatcher_xdp_func"}
BPF_CALLERS = {"packet_rcv_fanout": "rx: fanout BPF program (CBPF demux)",
               "fanout_demux_bpf": "rx: fanout BPF program (CBPF demux)",
               "tpacket_rcv": "rx: socket filter BPF", "packet_rcv": "rx: socket filter BPF"}

def bucket(comm, frames):
    in_bpf = False
    for sym, dso in frames:
        if sym in BPF or sym.startswith("bpf_prog_"):
            in_bpf = True
            continue
        if in_bpf and sym in BPF_CALLERS:
            return BPF_CALLERS[sym]
        for name, syms in RULES:
            if sym in syms:
                return name
        if dso.endswith("govs-sym") or dso == "[unknown]" and comm.startswith("govs"):
            if sym.startswith("runtime.") or sym.startswith("internal/runtime") or sym.startswith("syscall."):
                return "govs: Go runtime (scheduler, sysmon, syscall glue)"
            if sym.startswith("github.com/govs/govs/dataplane/afpacket."):
                return "govs: afpacket ring code"
            return "govs: data plane Go code"
    if comm.startswith("swapper"):
        return "idle"
    return "other (%s)" % comm.split("/")[0]

def main():
    pps = float(sys.argv[1]) if len(sys.argv) > 2 else 0
    busy_pct = float(sys.argv[2]) if len(sys.argv) > 2 else 0
    counts = collections.Counter()
    total = 0
    comm, frames = None, []
    def flush():
        nonlocal total
        if comm is not None:
            counts[bucket(comm, frames)] += 1
            total += 1
    for line in sys.stdin:
        if not line.strip():
            flush(); comm, frames = None, []
            continue
        if not line[0].isspace():
            flush(); comm, frames = line.split()[0], []
            continue
        parts = line.split()
        if len(parts) >= 2:
            dso = parts[-1].strip("()")
            sym = parts[1].split("+")[0]
            frames.append((sym, dso))
    flush()
    if total == 0:
        sys.exit("no samples: is the input `perf script -F comm,ip,sym,dso` of a `perf record -g`?")
    busy = total - counts["idle"]
    print("| bucket | share of the core | share of busy time | us/packet |")
    print("|---|---|---|---|")
    for name, n in counts.most_common():
        us = ""
        if pps and name != "idle":
            us = "%.2f" % (n / busy * busy_pct / 100 / pps * 1e6)
        print("| %s | %.1f%% | %s | %s |" % (name, 100 * n / total, "" if name == "idle" else "%.1f%%" % (100 * n / busy), us))
    if pps:
        print("| **busy total** | %.1f%% | 100%% | **%.2f** |" % (100 * busy / total, busy_pct / 100 / pps * 1e6))
    print("samples: %d" % total, file=sys.stderr)

main()
