//! The process's open-files limit, which bounds how many connections one server can hold.

use log::{info, warn};

/// Raises the soft open-files limit to the hard limit and returns the soft limit in force.
pub(crate) fn raise_open_files_limit() -> usize {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            info!("open-files limit: {limit}");
            usize::try_from(limit).unwrap_or(usize::MAX)
        }
        Err(error) => {
            warn!("could not read or raise the open-files limit: {error}");
            1024
        }
    }
}
