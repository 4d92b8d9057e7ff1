//! The users file, as the running gateway sees it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::config::ConfigError;
use crate::users_file::{self, Users};

/// The users file is not valid: every mistake, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct InvalidUsersFile(pub Vec<ConfigError>);

/// The users file, reloaded when it changes on disk.
pub struct UsersStore {
    pub path: PathBuf,
    current: ArcSwap<Users>,
    mtime: Mutex<Option<SystemTime>>,
}

impl UsersStore {
    pub fn load(path: PathBuf) -> Result<UsersStore, InvalidUsersFile> {
        let (users, mtime) = users_file::load(&path).map_err(InvalidUsersFile)?;
        Ok(UsersStore {
            path,
            current: ArcSwap::from_pointee(users),
            mtime: Mutex::new(mtime),
        })
    }

    pub fn get(&self) -> Arc<Users> {
        self.current.load_full()
    }

    /// Reloads when the file's modification time moved. A broken file is
    /// logged and the last good users keep serving.
    pub fn refresh(&self) {
        let mtime = users_file::modified(&self.path);
        let changed = self.mtime.lock().is_ok_and(|m| *m != mtime);
        if !changed {
            return;
        }
        match users_file::load(&self.path) {
            Ok((users, mtime)) => {
                tracing::info!(path = %self.path.display(), users = users.len(), "users file reloaded");
                self.current.store(Arc::new(users));
                if let Ok(mut m) = self.mtime.lock() {
                    *m = mtime;
                }
            }
            Err(errs) => {
                for e in errs {
                    tracing::error!(error = %e, "users file not reloaded; the previous version keeps serving");
                }
                if let Ok(mut m) = self.mtime.lock() {
                    *m = mtime;
                }
            }
        }
    }
}
