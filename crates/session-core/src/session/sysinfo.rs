//! The end user's system information, gathered on the applet under the
//! `system_information` permission.

use serde::{Deserialize, Serialize};
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, RefreshKind, System};

/// What the technician sees of the end user's machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    /// Operating system name and version.
    pub os: String,
    /// Kernel version.
    pub kernel: String,
    /// Host name.
    pub hostname: String,
    /// Processor brand.
    pub cpu: String,
    /// Logical processors.
    pub cpus: usize,
    /// Memory in all, in bytes.
    pub memory_total_bytes: u64,
    /// Memory available, in bytes.
    pub memory_available_bytes: u64,
    /// Time since boot, in seconds.
    pub uptime_s: u64,
    /// Mounted disks.
    pub disks: Vec<DiskInfo>,
}

/// One mounted file system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Where it is mounted.
    pub mount_point: String,
    /// Its file system.
    pub file_system: String,
    /// Its size in bytes.
    pub total_bytes: u64,
    /// Bytes free.
    pub available_bytes: u64,
}

impl SystemInfo {
    /// Reads this machine's information (blocking: call off the async threads).
    pub fn gather() -> Self {
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let unknown = || "unknown".to_owned();
        let disks = Disks::new_with_refreshed_list()
            .list()
            .iter()
            .map(|d| DiskInfo {
                mount_point: d.mount_point().display().to_string(),
                file_system: d.file_system().to_string_lossy().into_owned(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
            })
            .collect();
        Self {
            os: System::long_os_version().unwrap_or_else(unknown),
            kernel: System::kernel_version().unwrap_or_else(unknown),
            hostname: System::host_name().unwrap_or_else(unknown),
            cpu: sys
                .cpus()
                .first()
                .map(|c| c.brand().trim().to_owned())
                .filter(|b| !b.is_empty())
                .unwrap_or_else(unknown),
            cpus: sys.cpus().len(),
            memory_total_bytes: sys.total_memory(),
            memory_available_bytes: sys.available_memory(),
            uptime_s: System::uptime(),
            disks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_is_described() {
        let info = SystemInfo::gather();
        assert!(info.cpus >= 1);
        assert!(info.memory_total_bytes > 0);
        assert!(info.memory_available_bytes <= info.memory_total_bytes);
        assert!(info.uptime_s > 0);
        assert!(!info.hostname.is_empty());
    }
}
