//! Reading and writing the checkpoint file atomically: temp file, fsync, rename, fsync dir.

use nevermore_schemas::Checkpoint;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "checkpoints.json";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointIoError {
    #[error("cannot write checkpoint {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Loads the checkpoint file. A missing file is an empty checkpoint; a corrupt file or one of
/// another version is moved aside (`.corrupt`) and the collector starts clean, saying so.
pub fn load(dir: &Path) -> Checkpoint {
    let path = dir.join(FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Checkpoint::new(),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read checkpoint, starting clean");
            return Checkpoint::new();
        }
    };
    match Checkpoint::decode(&bytes) {
        Ok(c) => c,
        Err(e) => {
            let aside = dir.join(format!("{FILE_NAME}.corrupt"));
            let _ = fs::rename(&path, &aside);
            tracing::error!(path = %path.display(), moved_to = %aside.display(), error = %e, "checkpoint unusable, starting clean");
            Checkpoint::new()
        }
    }
}

/// Writes the checkpoint so that a crash at any point leaves either the old or the new file.
pub fn store(dir: &Path, cp: &Checkpoint) -> Result<(), CheckpointIoError> {
    let path = dir.join(FILE_NAME);
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let err = |source| CheckpointIoError::Write {
        path: path.clone(),
        source,
    };
    let mut f = File::create(&tmp).map_err(err)?;
    f.write_all(&cp.encode()).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    fs::rename(&tmp, &path).map_err(err)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), Checkpoint::new());
        let cp = Checkpoint::new();
        store(dir.path(), &cp).unwrap();
        assert_eq!(load(dir.path()), cp);
    }

    #[test]
    fn corrupt_or_unknown_version_starts_clean() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FILE_NAME),
            b"{\"version\": 1, \"streams\": {",
        )
        .unwrap();
        assert_eq!(load(dir.path()), Checkpoint::new());
        assert!(dir.path().join("checkpoints.json.corrupt").exists());
        fs::write(
            dir.path().join(FILE_NAME),
            b"{\"version\": 7, \"streams\": {}}",
        )
        .unwrap();
        assert_eq!(load(dir.path()), Checkpoint::new());
    }
}
