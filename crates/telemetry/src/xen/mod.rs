//! Xen hypercall counts: the `xenperf` text formats (host-wide perf counters, including the per-hypercall
//! array), `xentrace` binary records with per-domain attribution of PV hypercalls, and the sources that
//! stream or tail them ([`stream`]).

#[cfg(feature = "sources")]
pub mod stream;
pub mod xenperf;
pub mod xentrace;

/// Hypercall numbers of Xen's public interface (`xen/include/public/xen.h`), by number.
pub fn hypercall_name(op: u32) -> Option<&'static str> {
    const NAMES: [&str; 43] = [
        "set_trap_table",
        "mmu_update",
        "set_gdt",
        "stack_switch",
        "set_callbacks",
        "fpu_taskswitch",
        "sched_op_compat",
        "platform_op",
        "set_debugreg",
        "get_debugreg",
        "update_descriptor",
        "",
        "memory_op",
        "multicall",
        "update_va_mapping",
        "set_timer_op",
        "event_channel_op_compat",
        "xen_version",
        "console_io",
        "physdev_op_compat",
        "grant_table_op",
        "vm_assist",
        "update_va_mapping_otherdomain",
        "iret",
        "vcpu_op",
        "set_segment_base",
        "mmuext_op",
        "xsm_op",
        "nmi_op",
        "sched_op",
        "callback_op",
        "xenoprof_op",
        "event_channel_op",
        "physdev_op",
        "hvm_op",
        "sysctl",
        "domctl",
        "kexec_op",
        "tmem_op",
        "argo_op",
        "xenpmu_op",
        "dm_op",
        "hypfs_op",
    ];
    const ARCH: [&str; 8] = ["arch_0", "arch_1", "arch_2", "arch_3", "arch_4", "arch_5", "arch_6", "arch_7"];
    match op {
        0..=42 => Some(NAMES[op as usize]).filter(|n| !n.is_empty()),
        48..=55 => Some(ARCH[op as usize - 48]),
        _ => None,
    }
}

/// The number of a hypercall name (inverse of [`hypercall_name`]).
pub fn hypercall_number(name: &str) -> Option<u32> {
    (0..64).find(|&op| hypercall_name(op) == Some(name))
}

/// The five hypercalls of the seed-004 feature vector, in its order.
pub const SEED_FEATURES: [&str; 5] = ["event_channel_op", "grant_table_op", "mmuext_op", "hvm_op", "vcpu_op"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(hypercall_name(32), Some("event_channel_op"));
        assert_eq!(hypercall_name(34), Some("hvm_op"));
        assert_eq!(hypercall_name(11), None);
        assert_eq!(hypercall_name(50), Some("arch_2"));
        assert_eq!(hypercall_name(1000), None);
        for f in SEED_FEATURES {
            assert_eq!(hypercall_name(hypercall_number(f).unwrap()), Some(f));
        }
    }
}
