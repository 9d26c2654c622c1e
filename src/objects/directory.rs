//! The directory object store: a bucket is a first-level directory of one
//! root and an object is a regular file beneath it.
//!
//! Many accounts share the root, so the store never leaves it. Every path is
//! walked one component at a time from the root's descriptor with
//! `O_NOFOLLOW`: a symbolic link anywhere on the way is refused (as
//! `PermissionDenied`, which tasks report as `AccessDenied`), never
//! followed. Only regular files are objects: the type is checked before a
//! file is opened and again on the opened descriptor, and opens never block,
//! so a FIFO or a device cannot hang a task. Listings skip links and special
//! files. Writes go to a temporary file in the target's directory and are
//! renamed into place, so readers never see half an object. Error messages
//! name the object (`bucket/key`), never a path on the server.

use std::{
    ffi::CStr,
    fs::File,
    io::{Read, Write},
    ops::ControlFlow,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::fs::FileExt,
    },
    path::PathBuf,
    sync::Arc,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream::BoxStream};
use object_store::{
    Attributes, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
    UploadPart, path::Path,
};
use rustix::{
    fs::{AtFlags, FileType, Mode, OFlags, Stat},
    io::Errno,
};

/// The name under which this store reports errors.
const STORE: &str = "Directory";
/// Files being written start with this; listings never show them.
const STAGING_PREFIX: &str = ".batchops-tmp-";
/// Objects a listing hands its consumer at a time: one wake-up of the
/// consumer per batch, not per object.
const LISTING_BATCH: usize = 256;
/// Batches a listing reads ahead of its consumer.
const LISTING_BUFFER: usize = 4;
/// Directories one thread keeps open in [`keeping_directories`]: a run
/// mostly touches one or two, and the process runs up to
/// `--task-concurrency` runs at once, each holding this many descriptors.
const MAX_KEPT_DIRECTORIES: usize = 4;

/// A store's root and a directory path below it.
type DirectoryKey = (usize, String);

thread_local! {
    /// The directories this thread walked to in [`keeping_directories`];
    /// `None` outside it.
    static KEPT_DIRECTORIES: std::cell::RefCell<Option<std::collections::HashMap<DirectoryKey, Arc<OwnedFd>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `work` on this thread with every directory it walks to kept open
/// until it returns, so that a run of tasks on objects of one directory
/// walks the path once instead of once per object (two `openat`s and two
/// `close`s fewer per small file). Each object is still looked at, by
/// name, without following links, in the directory as it was when the run
/// first reached it: only the path above it is looked up once per run
/// (a run is at most a few dozen objects and milliseconds long).
pub fn keeping_directories<T>(work: impl FnOnce() -> T) -> T {
    struct Forget;
    impl Drop for Forget {
        fn drop(&mut self) {
            KEPT_DIRECTORIES.with_borrow_mut(|kept| *kept = None);
        }
    }
    KEPT_DIRECTORIES.with_borrow_mut(|kept| *kept = Some(Default::default()));
    let _forget = Forget;
    work()
}

/// Objects under one directory root.
#[derive(Clone)]
pub struct DirectoryStore {
    root: Arc<OwnedFd>,
}

impl std::fmt::Display for DirectoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectoryStore")
    }
}

impl std::fmt::Debug for DirectoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectoryStore")
    }
}

impl DirectoryStore {
    /// Opens `root` (created when missing). The root itself may be reached
    /// through a link; nothing below it is.
    pub fn open(root: &std::path::Path) -> std::io::Result<DirectoryStore> {
        std::fs::create_dir_all(root)?;
        let fd = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(DirectoryStore { root: Arc::new(fd) })
    }

    /// Runs `work` on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&DirectoryStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|source| object_store::Error::JoinError { source })?
    }

    /// The directory holding `location` and the object's file name, walking
    /// (and with `create`, making) its directories without following links.
    /// Within [`keeping_directories`], a directory already walked to is
    /// reused.
    fn parent(&self, location: &Path, create: bool) -> Result<(Arc<OwnedFd>, String)> {
        let parts: Vec<&str> = location.as_ref().split('/').collect();
        let Some((name, directories)) = parts.split_last() else {
            return Err(not_found(location, "an object needs a bucket and a key"));
        };
        if directories.is_empty() || name.is_empty() {
            return Err(not_found(location, "an object needs a bucket and a key"));
        }
        let key = (Arc::as_ptr(&self.root) as usize, directories.join("/"));
        let kept = KEPT_DIRECTORIES.with_borrow(|kept| kept.as_ref()?.get(&key).cloned());
        if let Some(directory) = kept {
            return Ok((directory, (*name).to_owned()));
        }
        let directory = Arc::new(self.directory(location, directories, create)?);
        KEPT_DIRECTORIES.with_borrow_mut(|kept| {
            if let Some(kept) = kept {
                if kept.len() >= MAX_KEPT_DIRECTORIES {
                    kept.clear();
                }
                kept.insert(key, directory.clone());
            }
        });
        Ok((directory, (*name).to_owned()))
    }

    /// Opens the directory named by `parts` below the root.
    fn directory(&self, location: &Path, parts: &[&str], create: bool) -> Result<OwnedFd> {
        let mut current: Option<OwnedFd> = None;
        for part in parts {
            let at = current
                .as_ref()
                .map(|fd| fd.as_fd())
                .unwrap_or(self.root.as_fd());
            let opened = match open_directory(at, part) {
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(at, *part, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => open_directory(at, part),
                        Err(error) => Err(error),
                    }
                }
                other => other,
            };
            current = Some(opened.map_err(|error| match error {
                // O_DIRECTORY | O_NOFOLLOW on a link fails with ENOTDIR on
                // some systems and ELOOP on others: look at what it is.
                Errno::NOTDIR | Errno::LOOP if is_link(at, part) => denied(
                    location,
                    "the path goes through a symbolic link, which this store does not follow",
                ),
                other => walk_error(location, other),
            })?);
        }
        match current {
            Some(fd) => Ok(fd),
            None => rustix::io::fcntl_dupfd_cloexec(&*self.root, 0)
                .map_err(|error| generic(location, error)),
        }
    }

    /// Opens the regular file at `location` for reading.
    fn open_regular(&self, location: &Path) -> Result<(File, Stat)> {
        let (parent, name) = self.parent(location, false)?;
        let before = rustix::fs::statat(&parent, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|error| walk_error(location, error))?;
        require_regular(location, &before)?;
        let fd = rustix::fs::openat(
            &parent,
            name.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|error| walk_error(location, error))?;
        // The name may have been replaced between the two looks.
        let stat = rustix::fs::fstat(&fd).map_err(|error| generic(location, error))?;
        require_regular(location, &stat)?;
        Ok((File::from(fd), stat))
    }

    /// A new staging file next to `location`, in a directory made if needed.
    fn stage(&self, location: &Path) -> Result<Staged> {
        let (parent, name) = self.parent(location, true)?;
        let staging = format!("{STAGING_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let fd = rustix::fs::openat(
            &parent,
            staging.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map_err(|error| walk_error(location, error))?;
        Ok(Staged {
            parent,
            staging,
            name,
            file: Arc::new(File::from(fd)),
            location: location.clone(),
            done: false,
        })
    }

    /// The objects below `prefix`, depth first in name order, sent to
    /// `sender` until it closes.
    fn walk_listing(&self, prefix: Option<&Path>, sender: &Listing) {
        let root = Path::default();
        let prefix = prefix.unwrap_or(&root);
        let start = match self.directory(prefix, &parts_of(prefix), false) {
            Ok(fd) => fd,
            Err(object_store::Error::NotFound { .. }) => return,
            Err(error) => {
                let _ = sender.blocking_send(Err(error));
                return;
            }
        };
        // Depth first, each directory's entries in name order, so keys come
        // out sorted the way S3 lists them (bar '/' sorting as a separator).
        let mut stack: Vec<Frame> = Vec::new();
        match Frame::open(start, prefix.as_ref().to_owned()) {
            Ok(frame) => stack.push(frame),
            Err(error) => {
                let _ = sender.blocking_send(Err(generic(prefix, error)));
                return;
            }
        }
        let mut batch = Vec::with_capacity(LISTING_BATCH);
        while let Some(frame) = stack.last_mut() {
            let Some(name) = frame.names.next() else {
                stack.pop();
                continue;
            };
            let Some(location) = child_location(&frame.base, &name) else {
                continue;
            };
            let Ok(stat) =
                rustix::fs::statat(&frame.directory, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            match FileType::from_raw_mode(stat.st_mode as _) {
                FileType::RegularFile => {
                    batch.push(meta(location, &stat));
                    if batch.len() == LISTING_BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(LISTING_BATCH));
                        if sender.blocking_send(Ok(full)).is_err() {
                            // The consumer stopped listening.
                            return;
                        }
                    }
                }
                FileType::Directory => {
                    let child = open_directory(frame.directory.as_fd(), &name)
                        .and_then(|fd| Frame::open(fd, location.as_ref().to_owned()));
                    if let Ok(child) = child {
                        stack.push(child);
                    }
                }
                _ => {}
            }
        }
        if !batch.is_empty() {
            let _ = sender.blocking_send(Ok(batch));
        }
    }
}

/// Where a listing sends its objects, a batch at a time.
type Listing = tokio::sync::mpsc::Sender<Result<Vec<ObjectMeta>>>;

/// A directory being listed: its descriptor, its path and the names left.
struct Frame {
    directory: OwnedFd,
    base: String,
    names: std::vec::IntoIter<String>,
}

impl Frame {
    fn open(directory: OwnedFd, base: String) -> rustix::io::Result<Frame> {
        let names = sorted_entries(&directory)?.into_iter();
        Ok(Frame {
            directory,
            base,
            names,
        })
    }
}

/// A file being written under a staging name, renamed into place on commit
/// and removed if dropped before.
#[derive(Debug)]
struct Staged {
    parent: Arc<OwnedFd>,
    staging: String,
    name: String,
    file: Arc<File>,
    location: Path,
    done: bool,
}

impl Staged {
    /// Puts the file at its name, replacing what was there, or with
    /// `exclusive` failing when something is.
    fn commit(&mut self, exclusive: bool) -> Result<PutResult> {
        let moved = if exclusive {
            rustix::fs::linkat(
                &*self.parent,
                self.staging.as_str(),
                &*self.parent,
                self.name.as_str(),
                AtFlags::empty(),
            )
            .and_then(|()| {
                rustix::fs::unlinkat(&*self.parent, self.staging.as_str(), AtFlags::empty())
            })
        } else {
            rustix::fs::renameat(
                &*self.parent,
                self.staging.as_str(),
                &*self.parent,
                self.name.as_str(),
            )
        };
        match moved {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                return Err(object_store::Error::AlreadyExists {
                    path: self.location.to_string(),
                    source: "the object already exists".into(),
                });
            }
            Err(Errno::ISDIR) | Err(Errno::NOTEMPTY) => {
                return Err(object_store::Error::PermissionDenied {
                    path: self.location.to_string(),
                    source: "a directory has the object's name".into(),
                });
            }
            Err(error) => return Err(generic(&self.location, error)),
        }
        self.done = true;
        let stat =
            rustix::fs::fstat(&*self.file).map_err(|error| generic(&self.location, error))?;
        Ok(PutResult {
            e_tag: Some(etag(&stat)),
            version: None,
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = rustix::fs::unlinkat(&*self.parent, self.staging.as_str(), AtFlags::empty());
        }
    }
}

/// A multipart upload: parts are written at their offsets in a staging file.
#[derive(Debug)]
struct DirectoryUpload {
    staged: Option<Staged>,
    offset: u64,
}

#[async_trait]
impl MultipartUpload for DirectoryUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let Some(staged) = &self.staged else {
            return Box::pin(futures::future::ready(Err(object_store::Error::Generic {
                store: STORE,
                source: "the upload has ended".into(),
            })));
        };
        let file = staged.file.clone();
        let location = staged.location.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut at = offset;
                for chunk in data.iter() {
                    file.write_all_at(chunk, at).map_err(|error| {
                        generic(&location, Errno::from_io_error(&error).unwrap_or(Errno::IO))
                    })?;
                    at += chunk.len() as u64;
                }
                Ok(())
            })
            .await
            .map_err(|source| object_store::Error::JoinError { source })?
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let Some(mut staged) = self.staged.take() else {
            return Err(object_store::Error::Generic {
                store: STORE,
                source: "the upload has ended".into(),
            });
        };
        tokio::task::spawn_blocking(move || staged.commit(false))
            .await
            .map_err(|source| object_store::Error::JoinError { source })?
    }

    async fn abort(&mut self) -> Result<()> {
        // Dropping the staged file removes it.
        if let Some(staged) = self.staged.take() {
            let _ = tokio::task::spawn_blocking(move || drop(staged)).await;
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for DirectoryStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        options: PutOptions,
    ) -> Result<PutResult> {
        if !options.attributes.is_empty() {
            return Err(object_store::Error::NotImplemented);
        }
        let exclusive = match options.mode {
            PutMode::Overwrite => false,
            PutMode::Create => true,
            PutMode::Update(_) => return Err(object_store::Error::NotImplemented),
        };
        let location = location.clone();
        self.blocking(move |store| {
            let mut staged = store.stage(&location)?;
            for chunk in payload.iter() {
                (&*staged.file)
                    .write_all(chunk)
                    .map_err(|error| io_error(&location, &error))?;
            }
            staged.commit(exclusive)
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        options: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        if !options.attributes.is_empty() {
            return Err(object_store::Error::NotImplemented);
        }
        let location = location.clone();
        let staged = self.blocking(move |store| store.stage(&location)).await?;
        Ok(Box::new(DirectoryUpload {
            staged: Some(staged),
            offset: 0,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if options.version.is_some() {
            return Err(object_store::Error::NotImplemented);
        }
        let location = location.clone();
        self.blocking(move |store| {
            let (file, stat) = store.open_regular(&location)?;
            let meta = meta(location.clone(), &stat);
            options.check_preconditions(&meta)?;
            let range = match &options.range {
                Some(range) => {
                    range
                        .as_range(meta.size)
                        .map_err(|error| object_store::Error::Generic {
                            store: STORE,
                            source: Box::new(error),
                        })?
                }
                None => 0..meta.size,
            };
            Ok(GetResult {
                // The "path" a read error names is the object's, not the file's.
                payload: GetResultPayload::File(file, PathBuf::from(location.as_ref())),
                meta,
                range,
                attributes: Attributes::default(),
            })
        })
        .await
    }

    async fn delete(&self, location: &Path) -> Result<()> {
        let location = location.clone();
        self.blocking(move |store| store.delete_blocking(&location))
            .await
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(LISTING_BUFFER);
        let store = self.clone();
        let prefix = prefix.cloned();
        tokio::task::spawn_blocking(move || store.walk_listing(prefix.as_ref(), &sender));
        tokio_stream::wrappers::ReceiverStream::new(receiver)
            .flat_map(|batch| match batch {
                Ok(objects) => {
                    futures::stream::iter(objects.into_iter().map(Ok).collect::<Vec<_>>())
                }
                Err(error) => futures::stream::iter(vec![Err(error)]),
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let prefix = prefix.cloned().unwrap_or_default();
        self.blocking(move |store| {
            let mut result = ListResult {
                common_prefixes: Vec::new(),
                objects: Vec::new(),
            };
            let directory = match store.directory(&prefix, &parts_of(&prefix), false) {
                Ok(fd) => fd,
                Err(object_store::Error::NotFound { .. }) => return Ok(result),
                Err(error) => return Err(error),
            };
            for name in sorted_entries(&directory).map_err(|error| generic(&prefix, error))? {
                let Some(location) = child_location(prefix.as_ref(), &name) else {
                    continue;
                };
                let Ok(stat) =
                    rustix::fs::statat(&directory, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                else {
                    continue;
                };
                match FileType::from_raw_mode(stat.st_mode as _) {
                    FileType::RegularFile => result.objects.push(meta(location, &stat)),
                    FileType::Directory => result.common_prefixes.push(location),
                    _ => {}
                }
            }
            Ok(result)
        })
        .await
    }

    async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        self.copy_object(from, to, false).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
        self.copy_object(from, to, true).await
    }
}

impl DirectoryStore {
    async fn copy_object(&self, from: &Path, to: &Path, exclusive: bool) -> Result<()> {
        let (from, to) = (from.clone(), to.clone());
        self.blocking(move |store| {
            store
                .copy_blocking(&from, &to, exclusive, &mut || ControlFlow::Continue(()))
                .map(|_| ())
        })
        .await
    }

    /// Reads the object at `location` on the calling thread, handing its
    /// bytes to `consume` in pieces of at most `buffer.len()`, as many as the
    /// file had when it was opened. `consume` may stop the read early, which
    /// is then reported as `Stopped`.
    pub fn read_blocking(
        &self,
        location: &Path,
        buffer: &mut [u8],
        mut consume: impl FnMut(&[u8]) -> ControlFlow<()>,
    ) -> Result<Finished> {
        let (file, stat) = self.open_regular(location)?;
        let mut left = stat.st_size.max(0) as u64;
        while left > 0 {
            let want = buffer
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let read = match (&file).read(&mut buffer[..want]) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(io_error(location, &error)),
            };
            left -= read as u64;
            if consume(&buffer[..read]).is_break() {
                return Ok(Finished::Stopped);
            }
        }
        Ok(Finished::Done)
    }

    /// Deletes the object at `location` on the calling thread.
    pub fn delete_blocking(&self, location: &Path) -> Result<()> {
        let (parent, name) = self.parent(location, false)?;
        let stat = rustix::fs::statat(&parent, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|error| walk_error(location, error))?;
        require_regular(location, &stat)?;
        rustix::fs::unlinkat(&parent, name.as_str(), AtFlags::empty())
            .map_err(|error| walk_error(location, error))
    }

    /// Copies the object at `from` to `to` on the calling thread (in the
    /// kernel where it can), asking `proceed` between pieces of
    /// `COPY_PIECE` bytes whether to go on; a stopped copy leaves nothing
    /// at `to`. With `exclusive`, an object already at `to` fails the copy.
    pub fn copy_blocking(
        &self,
        from: &Path,
        to: &Path,
        exclusive: bool,
        proceed: &mut dyn FnMut() -> ControlFlow<()>,
    ) -> Result<Finished> {
        let (source, _) = self.open_regular(from)?;
        let mut staged = self.stage(to)?;
        loop {
            let copied = std::io::copy(&mut (&source).take(COPY_PIECE), &mut &*staged.file)
                .map_err(|error| io_error(to, &error))?;
            if copied == 0 {
                break;
            }
            if proceed().is_break() {
                return Ok(Finished::Stopped);
            }
        }
        staged.commit(exclusive)?;
        Ok(Finished::Done)
    }
}

/// How a blocking read or copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// All of the object was read or copied.
    Done,
    /// The caller stopped it part way.
    Stopped,
}

/// Bytes a copy moves between two looks at whether to go on.
const COPY_PIECE: u64 = 8 << 20;

/// Whether `name` in `at` is a symbolic link.
fn is_link(at: BorrowedFd<'_>, name: &str) -> bool {
    rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode as _) == FileType::Symlink)
}

/// The segments of a path; none for the root.
fn parts_of(path: &Path) -> Vec<&str> {
    if path.as_ref().is_empty() {
        Vec::new()
    } else {
        path.as_ref().split('/').collect()
    }
}

fn open_directory(at: BorrowedFd<'_>, name: &str) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The names in a directory, sorted, without `.`, `..`, staging files and
/// names that are not UTF-8.
fn sorted_entries(directory: &OwnedFd) -> rustix::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(directory)? {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        let Ok(name) = name.to_str() else { continue };
        if name == "." || name == ".." || name.starts_with(STAGING_PREFIX) {
            continue;
        }
        names.push(name.to_owned());
    }
    names.sort_unstable();
    Ok(names)
}

/// `base/name` as an object path; `None` for names no key can have.
fn child_location(base: &str, name: &str) -> Option<Path> {
    let joined = if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}/{name}")
    };
    Path::parse(joined).ok()
}

/// Refuses anything but a regular file: a directory is no object, a link
/// or a special file is not served.
fn require_regular(location: &Path, stat: &Stat) -> Result<()> {
    match FileType::from_raw_mode(stat.st_mode as _) {
        FileType::RegularFile => Ok(()),
        FileType::Directory => Err(not_found(location, "the key names a directory")),
        FileType::Symlink => Err(denied(
            location,
            "the object is a symbolic link, which this store does not follow",
        )),
        _ => Err(denied(location, "the object is not a regular file")),
    }
}

/// The error for a failed step of a walk: a link on the way is refused.
fn walk_error(location: &Path, error: Errno) -> object_store::Error {
    match error {
        Errno::NOENT | Errno::NOTDIR => not_found(location, "no such object"),
        Errno::LOOP => denied(
            location,
            "the path goes through a symbolic link, which this store does not follow",
        ),
        Errno::NXIO => denied(location, "the object is not a regular file"),
        Errno::ACCESS | Errno::PERM => denied(location, "the server may not access the object"),
        other => generic(location, other),
    }
}

fn not_found(location: &Path, why: &'static str) -> object_store::Error {
    object_store::Error::NotFound {
        path: location.to_string(),
        source: why.into(),
    }
}

fn denied(location: &Path, why: &'static str) -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: location.to_string(),
        source: why.into(),
    }
}

/// Any other failure, described by its error number alone (no server path).
fn generic(location: &Path, error: Errno) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: format!("{location}: {}", std::io::Error::from(error)).into(),
    }
}

fn io_error(location: &Path, error: &std::io::Error) -> object_store::Error {
    generic(location, Errno::from_io_error(error).unwrap_or(Errno::IO))
}

/// An object's metadata from its file's status. (The casts are no-ops on
/// some platforms, not on others.)
#[allow(clippy::unnecessary_cast)]
fn meta(location: Path, stat: &Stat) -> ObjectMeta {
    let last_modified =
        DateTime::<Utc>::from_timestamp(stat.st_mtime as i64, stat.st_mtime_nsec as u32)
            .unwrap_or_default();
    ObjectMeta {
        location,
        last_modified,
        size: stat.st_size as u64,
        e_tag: Some(etag(stat)),
        version: None,
    }
}

/// Inode, modification time in microseconds and size, in hex: the ETag the
/// object_store crate's local backend gives, so pinned ETags stay valid.
#[allow(clippy::unnecessary_cast)]
fn etag(stat: &Stat) -> String {
    let micros = (stat.st_mtime as i128) * 1_000_000 + (stat.st_mtime_nsec as i128) / 1000;
    format!(
        "{:x}-{:x}-{:x}",
        stat.st_ino as u64,
        micros.max(0) as u128,
        stat.st_size as u64
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    fn store() -> (tempfile::TempDir, DirectoryStore) {
        let root = tempfile::tempdir().unwrap();
        let store = DirectoryStore::open(root.path()).unwrap();
        (root, store)
    }

    #[test]
    fn a_run_walks_to_each_directory_once_and_forgets_it_afterwards() {
        let (root, store) = store();
        for key in ["a/1", "a/2", "b/1"] {
            put_object_file(root.path(), key);
        }
        let location = |key: &str| Path::parse(format!("bucket/{key}")).unwrap();
        keeping_directories(|| {
            let (first, _) = store.parent(&location("a/1"), false).unwrap();
            let (again, name) = store.parent(&location("a/2"), false).unwrap();
            assert!(Arc::ptr_eq(&first, &again), "one walk for the run");
            assert_eq!(name, "2");
            let (other, _) = store.parent(&location("b/1"), false).unwrap();
            assert!(!Arc::ptr_eq(&first, &other));
            store.delete_blocking(&location("a/1")).unwrap();
            store.delete_blocking(&location("a/2")).unwrap();
            // Each object is still looked at: a directory is no object.
            std::fs::create_dir(root.path().join("bucket/a/d")).unwrap();
            assert!(store.delete_blocking(&location("a/d")).is_err());
        });
        assert!(!root.path().join("bucket/a/1").exists());
        // After the run, a directory swapped for a link is seen at once.
        std::fs::rename(root.path().join("bucket/b"), root.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(root.path().join("elsewhere"), root.path().join("bucket/b"))
            .unwrap();
        let (before, _) = keeping_directories(|| store.parent(&location("a/d"), false).unwrap());
        let (after, _) = store.parent(&location("a/d"), false).unwrap();
        assert!(
            !Arc::ptr_eq(&before, &after),
            "nothing is kept outside a run"
        );
        assert!(store.delete_blocking(&location("b/1")).is_err());
        assert!(root.path().join("elsewhere/1").exists());
    }

    fn put_object_file(root: &std::path::Path, key: &str) {
        let path = root.join("bucket").join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, key).unwrap();
    }

    #[tokio::test]
    async fn objects_round_trip_and_list_in_name_order() {
        let (root, store) = store();
        for key in ["b/2", "a", "b/1", "c d"] {
            let path = Path::parse(format!("bucket/{key}")).unwrap();
            store
                .put(&path, key.as_bytes().to_vec().into())
                .await
                .unwrap();
        }
        let read = store
            .get(&Path::parse("bucket/b/1").unwrap())
            .await
            .unwrap();
        assert_eq!(read.bytes().await.unwrap().as_ref(), b"b/1");
        let listed: Vec<String> = store
            .list(Some(&Path::parse("bucket").unwrap()))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            listed,
            ["bucket/a", "bucket/b/1", "bucket/b/2", "bucket/c d"]
        );
        let level = store
            .list_with_delimiter(Some(&Path::parse("bucket").unwrap()))
            .await
            .unwrap();
        assert_eq!(level.objects.len(), 2);
        assert_eq!(level.common_prefixes, [Path::parse("bucket/b").unwrap()]);
        // Nothing staged is left behind.
        let names: Vec<_> = std::fs::read_dir(root.path().join("bucket"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(STAGING_PREFIX)),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn a_listing_longer_than_its_batches_keeps_every_object_once_in_order() {
        let (root, store) = store();
        // Directories and files interleaved, across several batches.
        let mut keys: Vec<String> = (0..LISTING_BATCH * 2 + 7)
            .map(|i| format!("{:02}/{i:05}", i % 3))
            .collect();
        for key in &keys {
            put_object_file(root.path(), key);
        }
        keys.sort();
        let listed: Vec<String> = store
            .list(Some(&Path::parse("bucket").unwrap()))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        let expected: Vec<String> = keys.iter().map(|key| format!("bucket/{key}")).collect();
        assert_eq!(listed, expected);
        // A consumer that stops early stops the walk without harm.
        let first: Vec<_> = store.list(None).take(3).collect().await;
        assert_eq!(first.len(), 3);
    }

    #[tokio::test]
    async fn multipart_uploads_appear_only_when_complete() {
        let (_root, store) = store();
        let path = Path::parse("bucket/big").unwrap();
        let mut upload = store.put_multipart(&path).await.unwrap();
        let first = upload.put_part(vec![1u8; 10].into());
        let second = upload.put_part(vec![2u8; 5].into());
        futures::future::try_join(second, first).await.unwrap();
        assert!(
            store.head(&path).await.is_err(),
            "not visible before complete"
        );
        upload.complete().await.unwrap();
        let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(bytes.as_ref(), [[1u8; 10].as_slice(), &[2u8; 5]].concat());
        let aborted = Path::parse("bucket/aborted").unwrap();
        let mut upload = store.put_multipart(&aborted).await.unwrap();
        upload.put_part(vec![3u8; 4].into()).await.unwrap();
        upload.abort().await.unwrap();
        let listed: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
    }

    #[tokio::test]
    async fn copies_deletes_and_conditional_writes() {
        let (_root, store) = store();
        let from = Path::parse("bucket/from").unwrap();
        let to = Path::parse("other/deep/to").unwrap();
        store.put(&from, b"data".to_vec().into()).await.unwrap();
        store.copy(&from, &to).await.unwrap();
        assert!(matches!(
            store.copy_if_not_exists(&from, &to).await,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        store.delete(&to).await.unwrap();
        assert!(matches!(
            store.delete(&to).await,
            Err(object_store::Error::NotFound { .. })
        ));
        let etag = store.head(&from).await.unwrap().e_tag.unwrap();
        let options = GetOptions {
            if_match: Some("other".into()),
            ..GetOptions::default()
        };
        assert!(matches!(
            store.get_opts(&from, options).await,
            Err(object_store::Error::Precondition { .. })
        ));
        let options = GetOptions {
            if_match: Some(etag),
            ..GetOptions::default()
        };
        assert!(store.get_opts(&from, options).await.is_ok());
    }
}
