//! Finding cameras, so that a missing one gets an error that says what is there instead.

use std::path::{Path, PathBuf};

/// The `video*` device nodes in `dir` (normally `/dev`), sorted by number.
pub fn list_video_devices(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix("video")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// "camera /dev/video0 not found; video devices present: /dev/video2, /dev/video3".
pub fn missing_camera_message(path: &Path, present: &[PathBuf]) -> String {
    let list = if present.is_empty() {
        "none (is the camera plugged in and its driver loaded?)".to_string()
    } else {
        present
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "camera {} not found; video devices present: {list}",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_video_nodes_in_numeric_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["video10", "video2", "videoX", "tty0", "video0"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let found = list_video_devices(dir.path());
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["video0", "video2", "video10"]);
        let msg = missing_camera_message(Path::new("/dev/video5"), &found);
        assert!(msg.contains("/dev/video5 not found"), "{msg}");
        assert!(msg.contains("video2"), "{msg}");
        assert!(missing_camera_message(Path::new("/dev/video0"), &[]).contains("none"));
    }
}
