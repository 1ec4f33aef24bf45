//! Finding log files: the layout of kubelet's pod log directory, include/exclude globs, and the
//! stat snapshot the tailer reconciles against.
//!
//! Does no reading of file contents: identity (fingerprints) is the tailer's business.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a stream is: one container restart of one pod, or one file path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKey {
    Pod(PodContainer),
    File(PathBuf),
}

impl StreamKey {
    /// The stable text form used in checkpoints and in `event.id`.
    pub fn as_text(&self) -> String {
        match self {
            StreamKey::Pod(p) => format!(
                "k8s:{}_{}_{}/{}/{}",
                p.namespace, p.pod, p.uid, p.container, p.restart
            ),
            StreamKey::File(p) => format!("file:{}", p.display()),
        }
    }
}

/// The Kubernetes identity of a container log stream, from its path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodContainer {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub container: String,
    pub restart: u32,
}

/// Where a file sits in its stream's chain of segments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SegmentName {
    /// `N.log.<timestamp>[.gz]`: rotated; ordered by the timestamp text (kubelet writes
    /// `YYYYMMDD-HHMMSS`, which sorts chronologically).
    Rotated { stamp: String, gz: bool },
    /// `N.log`, or the path of a file source: the file being written.
    Live,
}

/// One file seen by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub name: SegmentName,
    pub dev: u64,
    pub inode: u64,
    pub size: u64,
}

/// Parses `<ns>_<pod>_<uid>` (pod names and namespaces contain no `_`; a uid never does).
pub fn parse_pod_dir(name: &str) -> Option<(String, String, String)> {
    let mut parts = name.splitn(3, '_');
    let ns = parts.next()?;
    let pod = parts.next()?;
    let uid = parts.next()?;
    if ns.is_empty() || pod.is_empty() || uid.is_empty() || uid.contains('_') {
        return None;
    }
    Some((ns.to_owned(), pod.to_owned(), uid.to_owned()))
}

/// Parses a file name in a container directory: `N.log`, `N.log.<stamp>`, `N.log.<stamp>.gz`.
/// Returns the restart number and the segment name.
pub fn parse_container_file(name: &str) -> Option<(u32, SegmentName)> {
    let (restart, rest) = name.split_once(".log")?;
    let restart: u32 = restart.parse().ok()?;
    if rest.is_empty() {
        return Some((restart, SegmentName::Live));
    }
    let rest = rest.strip_prefix('.')?;
    let (stamp, gz) = match rest.strip_suffix(".gz") {
        Some(s) => (s, true),
        None => (rest, false),
    };
    // kubelet's temporary files (`.tmp`) and anything else are not segments.
    if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return None;
    }
    Some((
        restart,
        SegmentName::Rotated {
            stamp: stamp.to_owned(),
            gz,
        },
    ))
}

/// Result of scanning one source: streams and their files, plus what could not be used.
#[derive(Debug, Default)]
pub struct Scan {
    pub streams: BTreeMap<StreamKey, Vec<Found>>,
    /// Directories or files skipped, with the reason (logged once by the caller).
    pub skipped: Vec<(PathBuf, String)>,
}

/// Scans kubelet's pod log directory.
pub fn scan_pods_dir(pods_dir: &Path) -> Scan {
    let mut scan = Scan::default();
    let Ok(pods) = fs::read_dir(pods_dir) else {
        scan.skipped
            .push((pods_dir.to_owned(), "cannot read directory".into()));
        return scan;
    };
    for pod in pods.flatten() {
        let pod_path = pod.path();
        let Some(name) = pod.file_name().to_str().map(str::to_owned) else {
            scan.skipped
                .push((pod_path, "directory name is not utf-8".into()));
            continue;
        };
        let Some((namespace, pod_name, uid)) = parse_pod_dir(&name) else {
            scan.skipped.push((
                pod_path,
                "directory name is not <namespace>_<pod>_<uid>".into(),
            ));
            continue;
        };
        if !is_real_dir(&pod_path) {
            continue;
        }
        let Ok(containers) = fs::read_dir(&pod_path) else {
            scan.skipped
                .push((pod_path, "cannot read directory".into()));
            continue;
        };
        for container in containers.flatten() {
            let cpath = container.path();
            let Some(cname) = container.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_real_dir(&cpath) {
                continue;
            }
            scan_container_dir(&cpath, &namespace, &pod_name, &uid, &cname, &mut scan);
        }
    }
    scan
}

/// Scans one container directory into `scan` (also used for targeted rescans on inotify events).
pub fn scan_container_dir(
    dir: &Path,
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
    scan: &mut Scan,
) {
    let Ok(files) = fs::read_dir(dir) else {
        scan.skipped
            .push((dir.to_owned(), "cannot read directory".into()));
        return;
    };
    for file in files.flatten() {
        let path = file.path();
        let Some(fname) = file.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some((restart, name)) = parse_container_file(&fname) else {
            continue;
        };
        // Symlinks are followed (kubelet links docker's json logs); loops fail stat and are skipped.
        let meta = match fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => continue,
            Err(e) => {
                scan.skipped.push((path, format!("cannot stat: {e}")));
                continue;
            }
        };
        let key = StreamKey::Pod(PodContainer {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            uid: uid.to_owned(),
            container: container.to_owned(),
            restart,
        });
        scan.streams.entry(key).or_default().push(Found {
            path,
            name,
            dev: meta.dev(),
            inode: meta.ino(),
            size: meta.len(),
        });
    }
}

fn is_real_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).map(|m| m.is_dir()).unwrap_or(false)
}

/// Scans the files matched by a file source's globs. Each path is a stream.
pub fn scan_globs(
    include: &globset::GlobSet,
    exclude: &globset::GlobSet,
    roots: &[PathBuf],
) -> Scan {
    let mut scan = Scan::default();
    for root in roots {
        walk(root, include, exclude, &mut scan, 0);
    }
    scan
}

/// Bounded depth: a symlink loop or a deep tree costs nothing more than this.
const MAX_DEPTH: usize = 16;

fn walk(
    dir: &Path,
    include: &globset::GlobSet,
    exclude: &globset::GlobSet,
    scan: &mut Scan,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            walk(&path, include, exclude, scan, depth + 1);
            continue;
        }
        if !include.is_match(&path) || exclude.is_match(&path) {
            continue;
        }
        let meta = match fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => continue,
            Err(err) => {
                scan.skipped.push((path, format!("cannot stat: {err}")));
                continue;
            }
        };
        scan.streams
            .entry(StreamKey::File(path.clone()))
            .or_default()
            .push(Found {
                path,
                name: SegmentName::Live,
                dev: meta.dev(),
                inode: meta.ino(),
                size: meta.len(),
            });
    }
}

/// The directory to start walking from for a glob: its longest prefix without glob characters.
pub fn glob_root(pattern: &str) -> PathBuf {
    let mut root = PathBuf::new();
    for comp in Path::new(pattern).components() {
        let s = comp.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[', '{']) {
            break;
        }
        root.push(comp);
    }
    if root.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        root
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pod_dir_names() {
        assert_eq!(
            parse_pod_dir("shop_api-7d9f_5c1e-aa"),
            Some(("shop".into(), "api-7d9f".into(), "5c1e-aa".into()))
        );
        assert_eq!(parse_pod_dir("not-a-pod-dir"), None);
        assert_eq!(parse_pod_dir("a__b"), None);
        assert_eq!(parse_pod_dir("a_b_c_d"), None);
    }

    #[test]
    fn container_file_names() {
        assert_eq!(parse_container_file("0.log"), Some((0, SegmentName::Live)));
        assert_eq!(
            parse_container_file("3.log.20261126-100000"),
            Some((
                3,
                SegmentName::Rotated {
                    stamp: "20261126-100000".into(),
                    gz: false
                }
            ))
        );
        assert_eq!(
            parse_container_file("3.log.20261126-100000.gz"),
            Some((
                3,
                SegmentName::Rotated {
                    stamp: "20261126-100000".into(),
                    gz: true
                }
            ))
        );
        assert_eq!(parse_container_file("0.log.20261126-100000.tmp"), None);
        assert_eq!(parse_container_file("x.log"), None);
        assert_eq!(parse_container_file("0.txt"), None);
        // Rotated segments sort before the live one, and by time among themselves.
        let a = SegmentName::Rotated {
            stamp: "20261126-100000".into(),
            gz: true,
        };
        let b = SegmentName::Rotated {
            stamp: "20261126-100001".into(),
            gz: false,
        };
        assert!(a < b && b < SegmentName::Live);
    }

    #[test]
    fn glob_roots() {
        assert_eq!(
            glob_root("/var/log/kubernetes/audit/*.log"),
            PathBuf::from("/var/log/kubernetes/audit")
        );
        assert_eq!(glob_root("/var/log/**/x.log"), PathBuf::from("/var/log"));
    }

    #[test]
    fn scan_skips_bad_dirs_and_symlink_loops() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("ns_pod_uid/app");
        fs::create_dir_all(&c).unwrap();
        fs::write(c.join("0.log"), b"x\n").unwrap();
        fs::create_dir_all(dir.path().join("garbage")).unwrap();
        std::os::unix::fs::symlink(c.join("loop.log"), c.join("loop.log")).unwrap();
        std::os::unix::fs::symlink("1.log", c.join("1.log")).unwrap();
        let scan = scan_pods_dir(dir.path());
        assert_eq!(scan.streams.len(), 1);
        assert!(scan.skipped.iter().any(|(p, _)| p.ends_with("garbage")));
        assert!(scan.skipped.iter().any(|(p, _)| p.ends_with("1.log")));
    }
}
