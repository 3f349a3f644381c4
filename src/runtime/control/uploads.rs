//! Local files spooled on request (`msrpcast_engine_upload_file`, UPLOAD_FILE).

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::runtime::engine::{Engine, EngineError, Upload};
use crate::runtime::log::Level;

/// Why a local file could not be spooled.
#[derive(Debug)]
pub enum UploadFileError {
    /// The file cannot be opened or is not a regular file.
    Io(io::Error),
    /// The engine refused the transfer.
    Engine(EngineError),
}

impl std::fmt::Display for UploadFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadFileError::Io(e) => write!(f, "{e}"),
            UploadFileError::Engine(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UploadFileError {}

/// Files spooled from the local file system (`msrpcast_engine_upload_file`, the UPLOAD_FILE
/// request): each copy runs on its own short-lived thread so the caller never waits for the disk.
#[derive(Default)]
pub struct FileUploads {
    jobs: Mutex<Vec<(Arc<AtomicBool>, JoinHandle<()>)>>,
}

impl FileUploads {
    /// Opens `path`, starts the transfer for `conference` and copies the file into the spool on a
    /// thread. Returns the transfer id once the transfer exists (deliveries are already starting).
    pub fn start(
        &self,
        engine: &Engine,
        conference: &str,
        path: &Path,
    ) -> Result<u64, UploadFileError> {
        let io = |e: io::Error| {
            UploadFileError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        };
        let file = fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_owned());
        let upload = engine
            .upload(
                conference,
                &name,
                "application/octet-stream",
                Some(meta.len()),
            )
            .map_err(UploadFileError::Engine)?;
        let transfer = upload.transfer.0;
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let logger = engine.logger().clone();
        let shown = path.display().to_string();
        let handle = std::thread::Builder::new()
            .name("msrpcast-upload".into())
            .spawn(move || {
                if let Err(e) = copy_into(file, upload, &flag) {
                    logger.log(
                        Level::Warn,
                        "control",
                        format_args!("transfer {transfer}: upload of {shown:?} failed: {e}"),
                    );
                }
            })
            .map_err(UploadFileError::Io)?;
        let mut jobs = self.jobs.lock();
        jobs.retain(|(_, h)| !h.is_finished());
        jobs.push((cancel, handle));
        Ok(transfer)
    }

    /// Aborts the copies still running and waits for their threads.
    pub fn stop(&self) {
        let jobs = std::mem::take(&mut *self.jobs.lock());
        for (cancel, _) in &jobs {
            cancel.store(true, Ordering::Relaxed);
        }
        for (_, h) in jobs {
            let _ = h.join();
        }
    }
}

impl Drop for FileUploads {
    fn drop(&mut self) {
        self.stop();
    }
}

fn copy_into(mut file: fs::File, mut upload: Upload, cancel: &AtomicBool) -> Result<(), String> {
    use std::io::Read;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if cancel.load(Ordering::Relaxed) {
            upload.abort();
            return Err("engine stopping".into());
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                upload.abort();
                return Err(e.to_string());
            }
        };
        upload.append(&buf[..n]).map_err(|e| e.to_string())?;
    }
    upload.finish().map(|_| ()).map_err(|e| e.to_string())
}
