//! Files only their owner may read: what the file state store and the simulator's shared
//! world write.
//!
//! - Directories are created 0700 and files 0600 by the call that creates them (the mode is
//!   given to `mkdir(2)` / `open(2)`, so there is no moment when they are readable by others;
//!   the umask can only take bits away). Directories and files that exist already keep their
//!   modes.
//! - A file is replaced through a temporary file created exclusively (`O_EXCL`, so a planted
//!   symlink or file makes the creation fail or pick another name, never write elsewhere) with
//!   a random name in the target's own directory, fsynced and renamed over the target. The
//!   temporary file is removed on every error path.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// The mode of the directories created for state.
pub(crate) const DIR_MODE: u32 = 0o700;
/// The mode of the state, lock and event files created.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents, each 0700 (before the umask); an existing one is left
/// as it is.
pub(crate) fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Options that create a missing file 0600 (before the umask).
pub(crate) fn open_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Which step of [`replace`] failed, and its error.
#[derive(Debug)]
pub(crate) struct ReplaceError {
    /// `create`, `write`, `fsync`, `rename into` or `fsync the directory of`.
    pub(crate) step: &'static str,
    pub(crate) error: std::io::Error,
}

/// Replaces the file at `path` with `bytes` atomically: a new 0600 temporary file
/// `.<name>.<random>.tmp` in the same directory, written and fsynced, renamed over `path`, and
/// the directory fsynced when `sync_dir`. A crash leaves the old or the new file, never a mix;
/// the temporary file is removed on every error.
pub(crate) fn replace(path: &Path, bytes: &[u8], sync_dir: bool) -> Result<(), ReplaceError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "state".to_owned());
    let fail = |step| move |error| ReplaceError { step, error };
    let prefix = format!(".{name}.");
    let mut file = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(FILE_MODE))
        .tempfile_in(dir)
        .map_err(fail("create"))?;
    // On an error below, dropping `file` (or the PersistError holding it) removes it.
    file.write_all(bytes).map_err(fail("write"))?;
    file.as_file().sync_all().map_err(fail("fsync"))?;
    file.persist(path).map_err(|e| ReplaceError { step: "rename into", error: e.error })?;
    if sync_dir {
        File::open(dir).and_then(|d| d.sync_all()).map_err(fail("fsync the directory of"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn a_failed_replace_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The rename fails: the target is a non-empty directory.
        let target = dir.path().join("state.json");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), "x").unwrap();
        let err = replace(&target, b"{}", true).unwrap_err();
        assert_eq!(err.step, "rename into", "{err:?}");
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
        // A directory that does not exist: nothing created.
        let err = replace(&dir.path().join("missing/state.json"), b"{}", true).unwrap_err();
        assert_eq!(err.step, "create", "{err:?}");
    }

    #[test]
    fn a_replace_writes_a_private_file_and_leaves_nothing_else() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state.json");
        replace(&target, b"one", true).unwrap();
        replace(&target, b"two", false).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "two");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }
}
