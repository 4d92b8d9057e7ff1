//! Private storage for keys and certificates: 0700 directories and files
//! replaced atomically, so a crash never leaves a half-written key and a key
//! is never readable by others, not even for a moment.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::CertError;

/// Create `path` and missing parents with mode 0700. An existing directory
/// keeps its mode (the operator may have chosen it); anything else at `path`
/// is an error.
pub fn ensure_private_dir(path: &Path) -> Result<(), CertError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(CertError::NotADirectory {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(io_error(path, "inspect directory", source)),
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| io_error(path, "create directory", source))
}

/// Replace `path` with `bytes` atomically: write a temp file in the same
/// directory (created with `mode`, so never wider), fsync it, rename it over
/// `path`, then fsync the directory so the rename survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let tmp = temp_path(path);
    let written = write_new(&tmp, bytes, mode)
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| io_error(path, "rename into", e)));
    if let Err(e) = written {
        // Best effort: the temp file is ours and useless now.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_error(dir, "sync directory", source))
}

/// Create `tmp` exclusively with `mode`, write and fsync it.
fn write_new(tmp: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(|source| io_error(tmp, "create", source))?;
    // The umask may have narrowed the mode; make it exactly what was asked.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|source| io_error(tmp, "set permissions on", source))?;
    file.write_all(bytes)
        .map_err(|source| io_error(tmp, "write", source))?;
    file.sync_all()
        .map_err(|source| io_error(tmp, "sync", source))
}

/// `.name.tmp.<pid>.<n>` beside `path`: hidden, and unique per process and call.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}.{n}", std::process::id()))
}

fn io_error(path: &Path, action: &'static str, source: io::Error) -> CertError {
    CertError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn creates_nested_private_dirs() {
        let root = tempfile::tempdir().expect("tempdir");
        let nested = root.path().join("a/b/c");
        ensure_private_dir(&nested).expect("create");
        assert!(nested.is_dir());
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        // Idempotent.
        ensure_private_dir(&nested).expect("again");
    }

    #[test]
    fn existing_dir_keeps_its_mode() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("shared");
        fs::create_dir(&dir).expect("mkdir");
        fs::set_permissions(&dir, Permissions::from_mode(0o750)).expect("chmod");
        ensure_private_dir(&dir).expect("exists");
        assert_eq!(mode(&dir), 0o750);
    }

    #[test]
    fn file_in_the_way_is_an_error() {
        let root = tempfile::tempdir().expect("tempdir");
        let file = root.path().join("file");
        fs::write(&file, b"x").expect("write");
        let err = ensure_private_dir(&file).expect_err("not a dir");
        assert!(matches!(err, CertError::NotADirectory { .. }));
        assert!(err
            .to_string()
            .ends_with("file: exists but is not a directory"));
    }

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temp_files() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("key.pem");
        write_atomic(&path, b"first", 0o600).expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"first");
        assert_eq!(mode(&path), 0o600);

        write_atomic(&path, b"second", 0o640).expect("overwrite");
        assert_eq!(fs::read(&path).expect("read"), b"second");
        assert_eq!(mode(&path), 0o640);
        assert_eq!(entries(root.path()), ["key.pem"]);
    }

    #[test]
    fn failed_write_reports_path_and_cleans_up() {
        let root = tempfile::tempdir().expect("tempdir");
        // Renaming a file over a non-empty directory fails.
        let target = root.path().join("busy");
        fs::create_dir(&target).expect("mkdir");
        fs::write(target.join("inside"), b"x").expect("write");
        let err = write_atomic(&target, b"data", 0o600).expect_err("rename fails");
        assert!(
            matches!(
                err,
                CertError::Io {
                    action: "rename into",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(entries(root.path()), ["busy"]);
    }
}
